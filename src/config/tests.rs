use super::*;

fn problems(toml: &str) -> Vec<Problem> {
    Config::from_toml(toml).unwrap_err().problems
}

fn keys(toml: &str) -> Vec<String> {
    problems(toml).into_iter().map(|p| p.key).collect()
}

#[test]
fn the_example_config_is_valid() {
    let config = Config::from_toml(include_str!("../../config/example.toml")).unwrap();
    assert_eq!(config.projects[0].channels.len(), 6);
    assert_eq!(config.projects[0].auto_close_after, Duration::from_secs(86_400));
}

#[test]
fn an_unknown_key_is_reported_with_its_path() {
    let p = problems("[[projects]]\nid = \"a\"\nauto_close_afer = \"1h\"\n");
    assert_eq!(p[0].key, "projects[0].auto_close_afer");
    assert!(p[0].message.contains("auto_close_afer"), "{}", p[0].message);
}

#[test]
fn an_unknown_channel_kind_is_reported_at_the_channel() {
    let p = problems("[[projects]]\nid = \"a\"\n[[projects.channels]]\nid = \"c\"\nkind = \"telegam\"\n");
    assert_eq!(p[0].key, "projects[0].channels[0].kind");
    assert!(p[0].message.contains("telegam"));
}

#[test]
fn a_bad_duration_names_its_key() {
    let p = problems("[[projects]]\nid = \"a\"\nauto_close_after = \"a day\"\n");
    assert_eq!(p[0].key, "projects[0].auto_close_after");
    assert!(p[0].message.contains("bad duration"));
}

#[test]
fn duplicates_and_empty_rules_are_all_reported_at_once() {
    let toml = r#"
[[projects]]
id = "a"
  [[projects.channels]]
  id = "c"
  kind = "vk"
  [[projects.channels]]
  id = "c"
  kind = "vk"
  [[projects.multicontact_rules]]
  id = "r"
  fields = []
[[projects]]
id = "a"
"#;
    assert_eq!(
        keys(toml),
        ["projects[1]", "projects[0].channels[1]", "projects[0].multicontact_rules[0].fields"]
    );
}

#[test]
fn a_bad_region_and_a_merge_limit_of_one_are_refused() {
    let k = keys("[[projects]]\nid = \"a\"\ndefault_region = \"XX\"\nmax_merge_group = 1\n");
    assert_eq!(k, ["projects[0].default_region", "projects[0].max_merge_group"]);
}

#[test]
fn environment_variables_override_file_keys() {
    let dir = std::env::temp_dir().join(format!("appealflow-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "[pipeline]\nbatch_size = 10\n").unwrap();
    // SAFETY-free in edition 2021; no other test reads this variable.
    std::env::set_var("APPEALFLOW__PIPELINE__BATCH_SIZE", "77");
    let config = Config::load(Some(&file)).unwrap();
    std::env::remove_var("APPEALFLOW__PIPELINE__BATCH_SIZE");
    assert_eq!(config.pipeline.batch_size, 77);
}

#[test]
fn a_password_in_the_store_url_is_hidden() {
    assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
    assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
}

const CRM_PROJECT: &str = r#"
[[projects]]
id = "a"
  [projects.crm]
  url = "http://127.0.0.1:8099"
  token = "s3cret-token"
  [[projects.channels]]
  id = "wa"
  kind = "whatsapp"
    [projects.channels.identification]
    name = "by phone"
    identifier = "phone"
    ask_client = true
    question = "Your phone, please"
"#;

#[test]
fn a_crm_block_gets_the_documented_defaults() {
    let config = Config::from_toml(CRM_PROJECT).unwrap();
    let crm = config.projects[0].crm.as_ref().unwrap();
    assert_eq!(crm.timeout, Duration::from_secs(2));
    assert_eq!(crm.cache_ttl, Duration::from_secs(600));
    assert_eq!((crm.retries, crm.backoff), (2, Duration::from_millis(100)));
    assert_eq!((crm.concurrency, crm.breaker_failures), (8, 5));
    assert_eq!(crm.breaker_cooldown, Duration::from_secs(30));
    let rule = config.projects[0].channels[0].identification.as_ref().unwrap();
    assert_eq!((rule.identifier, rule.max_attempts, rule.ask_client), (IdentifierType::Phone, 3, true));
}

#[test]
fn the_crm_token_never_appears_in_debug_output_or_the_explanation() {
    let config = Config::from_toml(CRM_PROJECT).unwrap();
    let debug = format!("{config:?}");
    let explained = explain(&config);
    assert!(!debug.contains("s3cret-token") && debug.contains("***"), "{debug}");
    assert!(!explained.contains("s3cret-token") && explained.contains("token set"), "{explained}");
    assert!(explained.contains("CRM identification \"by phone\" by phone"), "{explained}");
}

#[test]
fn identification_without_a_project_crm_is_refused() {
    let crm_block = "  [projects.crm]\n  url = \"http://127.0.0.1:8099\"\n  token = \"s3cret-token\"\n";
    let toml = CRM_PROJECT.replace(crm_block, "");
    assert_ne!(toml, CRM_PROJECT);
    let p = problems(&toml);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "projects[0].channels[0].identification");
    assert!(p[0].message.contains("no [projects.crm]"));
}

#[test]
fn asking_the_client_requires_a_question() {
    let toml = CRM_PROJECT.replace("question = \"Your phone, please\"", "");
    assert_eq!(keys(&toml), ["projects[0].channels[0].identification.question"]);
}

#[test]
fn an_unknown_identifier_type_is_reported_at_its_key() {
    let p = problems(&CRM_PROJECT.replace("identifier = \"phone\"", "identifier = \"skype\""));
    assert_eq!(p[0].key, "projects[0].channels[0].identification.identifier");
}

#[test]
fn bad_crm_url_timeout_and_concurrency_are_all_reported() {
    let toml = CRM_PROJECT.replace(
        "url = \"http://127.0.0.1:8099\"",
        "url = \"crm.local\"\n  timeout = \"0s\"\n  concurrency = 0",
    );
    assert_eq!(
        keys(&toml),
        ["projects[0].crm.url", "projects[0].crm.timeout", "projects[0].crm.concurrency"]
    );
}

#[test]
fn an_https_crm_url_is_refused_because_this_build_speaks_plain_http() {
    let p = problems(&CRM_PROJECT.replace("http://127", "https://127"));
    assert_eq!(p[0].key, "projects[0].crm.url");
    assert!(p[0].message.contains("https"), "{}", p[0].message);
}

#[test]
fn a_misspelt_crm_key_is_an_error() {
    let p = problems(&CRM_PROJECT.replace("token =", "tokn ="));
    assert_eq!(p[0].key, "projects[0].crm.tokn");
}
