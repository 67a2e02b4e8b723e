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
