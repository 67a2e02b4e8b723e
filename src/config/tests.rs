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
fn the_example_config_states_the_built_in_defaults() {
    let example = Config::from_toml(include_str!("../../config/example.toml")).unwrap();
    let default = PipelineConfig::default();
    let p = &example.pipeline;
    assert_eq!(p.batch_size, default.batch_size);
    assert_eq!(p.batch_max_wait, default.batch_max_wait);
    assert_eq!(p.buffered_batches, default.buffered_batches);
    assert_eq!(p.max_future, default.max_future);
    assert_eq!(p.dlq_max_bytes, default.dlq_max_bytes);
    let kafka = KafkaConfig::default();
    assert_eq!(example.kafka.shutdown_deadline, kafka.shutdown_deadline);
    assert_eq!(example.kafka.idle_clock_after, kafka.idle_clock_after);
    assert_eq!(example.store.max_connections, StoreConfig::default().max_connections);
    assert_eq!(example.ops.listen, OpsConfig::default().listen);
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
fn a_partition_buffer_of_no_batches_is_refused() {
    let k = keys("[pipeline]\nbuffered_batches = 0\n[[projects]]\nid = \"a\"\ndefault_region = \"RU\"\n");
    assert_eq!(k, ["pipeline.buffered_batches"]);
}

#[test]
fn environment_variables_override_file_keys() {
    let dir = std::env::temp_dir().join(format!("appealflow-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "[pipeline]\nbatch_size = 10\n[[projects]]\nid = \"a\"\n").unwrap();
    // SAFETY-free in edition 2021; no other test reads these variables (one test sets both,
    // so they never race).
    std::env::set_var("APPEALFLOW__PIPELINE__BATCH_SIZE", "77");
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(config.pipeline.batch_size, 77);
    std::env::set_var("APPEALFLOW__PROJECTS__0__ID", "b");
    let refused = Config::load(Some(&file)).unwrap_err();
    std::env::remove_var("APPEALFLOW__PROJECTS__0__ID");
    std::env::remove_var("APPEALFLOW__PIPELINE__BATCH_SIZE");
    assert_eq!(refused.problems[0].key, "APPEALFLOW__PROJECTS__0__ID");
    assert!(refused.problems[0].message.contains("cannot be overridden"));
}

#[test]
fn sizes_durations_and_ids_outside_their_bounds_are_refused_by_key() {
    let project = "[[projects]]\nid = \"a\"\n";
    let cases = [
        (
            "[[projects]]\nid = \"a\"\nauto_close_after = \"300000000years\"\n".to_string(),
            "projects[0].auto_close_after",
        ),
        (format!("[pipeline]\nbatch_max_wait = \"1ns\"\n{project}"), "pipeline.batch_max_wait"),
        (format!("[pipeline]\nbatch_size = 9223372036854775807\n{project}"), "pipeline.batch_size"),
        (format!("[pipeline]\ndlq_max_bytes = 999000\n{project}"), "pipeline.dlq_max_bytes"),
        (format!("[kafka]\nshutdown_deadline = \"30s\"\n{project}"), "kafka.shutdown_deadline"),
        (
            format!("{project}[[projects.channels]]\nid = \"tg:1\"\nkind = \"telegram\"\n"),
            "projects[0].channels[0].id",
        ),
        ("[pipeline]\nbatch_size = 10\n".to_string(), "projects"),
    ];
    for (toml, key) in cases {
        assert!(keys(&toml).contains(&key.to_string()), "{key} in {:?}", keys(&toml));
    }
    let roomy = format!("[pipeline]\ndlq_max_bytes = 999000\n[kafka.producer_options]\n\"message.max.bytes\" = \"2000000\"\n{project}");
    assert!(Config::from_toml(&roomy).is_ok(), "a larger producer limit makes room");
    let patient = format!("[kafka]\nshutdown_deadline = \"30s\"\n[kafka.consumer_options]\n\"session.timeout.ms\" = \"45000\"\n{project}");
    assert!(Config::from_toml(&patient).is_ok(), "a longer session timeout allows a longer shutdown");
}

#[test]
fn a_password_in_the_store_url_is_hidden() {
    assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
    assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
}

/// A project with one scenario starting at `start` and the given `[[...blocks]]` tables.
fn scenario(start: &str, blocks: &str) -> String {
    format!("[[projects]]\nid = \"a\"\n[[projects.scenarios]]\nid = \"s\"\nstart = \"{start}\"\n{blocks}")
}

fn block(fields: &str) -> String {
    format!("[[projects.scenarios.blocks]]\n{fields}\n")
}

fn end(id: &str) -> String {
    block(&format!("id = \"{id}\"\ntype = \"end\""))
}

fn ask(id: &str, extra: &str) -> String {
    block(&format!("id = \"{id}\"\ntype = \"ask\"\ntext = \"?\"\nexpect = \"any\"\nnext = \"done\"\n{extra}"))
}

const FULL_SCENARIO: &str = r#"
[[projects]]
id = "acme"
  [[projects.channels]]
  id = "acme-wa"
  kind = "whatsapp"
  scenario = "onboarding"

  [[projects.scenarios]]
  id = "onboarding"
  start = "has-phone"
    [[projects.scenarios.blocks]]
    id = "has-phone"
    type = "check_field"
    field = "phone"
    filled = "identify"
    empty = "ask-phone"
    [[projects.scenarios.blocks]]
    id = "ask-phone"
    type = "ask"
    text = "Please send your mobile phone number"
    expect = "phone"
    save_to = "phone"
    on_invalid = "repeat"
    error_text = "That does not look like a phone number, please try again"
    max_repeats = 3
    invalid = "operator"
    next = "identify"
    [[projects.scenarios.blocks]]
    id = "identify"
    type = "identify"
    next = "has-contract"
    [[projects.scenarios.blocks]]
    id = "has-contract"
    type = "check_field"
    field = "contract_number"
    filled = "thanks"
    empty = "ask-contract"
    [[projects.scenarios.blocks]]
    id = "ask-contract"
    type = "ask"
    text = "Your contract number, please (like D-100)"
    expect = "regex"
    pattern = '[A-Za-z]-\d{1,6}'
    save_to = "contract_number"
    on_invalid = "continue"
    invalid = "operator"
    next = "thanks"
    [[projects.scenarios.blocks]]
    id = "operator"
    type = "message"
    text = "An operator will help you shortly"
    next = "done"
    [[projects.scenarios.blocks]]
    id = "thanks"
    type = "message"
    text = "Thank you!"
    next = "done"
    [[projects.scenarios.blocks]]
    id = "done"
    type = "end"
"#;

#[test]
fn a_full_scenario_with_every_block_type_parses_and_is_valid_without_warnings() {
    let config = Config::from_toml(FULL_SCENARIO).unwrap();
    let project = &config.projects[0];
    assert_eq!(project.channels[0].scenario.as_deref(), Some("onboarding"));
    let s = project.scenario("onboarding").unwrap();
    let kinds: Vec<&str> = s.blocks.iter().map(|b| b.kind().as_str()).collect();
    assert_eq!(kinds, ["check_field", "ask", "identify", "check_field", "ask", "message", "message", "end"]);
    let BlockConfig::Ask(ask) = &s.blocks[4] else { panic!("block 4 is an ask") };
    assert_eq!((ask.expect, ask.on_invalid), (Expect::Regex, OnInvalid::Continue));
    assert_eq!(ask.pattern.as_deref(), Some(r"[A-Za-z]-\d{1,6}"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert!(explain(&config).contains("scenario onboarding: 8 block(s), starts at has-phone"));
}

#[test]
fn an_ask_without_on_invalid_repeats_with_a_default_error_text() {
    let config = Config::from_toml(&scenario("q", &(ask("q", "") + &end("done")))).unwrap();
    let BlockConfig::Ask(ask) = &config.projects[0].scenarios[0].blocks[0] else { panic!("an ask") };
    assert_eq!(ask.on_invalid, OnInvalid::Repeat);
    assert!(!ask.error_text().is_empty());
}

#[test]
fn an_unknown_key_in_a_block_is_reported_at_that_block() {
    let p = problems(&scenario("q", &(ask("q", "error_txt = \"oops\"") + &end("done"))));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].key.starts_with("projects[0].scenarios[0].blocks[0]"), "{}", p[0].key);
    assert!(p[0].message.contains("error_txt"), "{}", p[0].message);
}

#[test]
fn a_key_of_another_block_type_is_unknown_too() {
    let p = problems(&scenario("done", &block("id = \"done\"\ntype = \"end\"\nnext = \"x\"")));
    assert!(p[0].key.starts_with("projects[0].scenarios[0].blocks[0]"), "{}", p[0].key);
    assert!(p[0].message.contains("next"), "{}", p[0].message);
}

#[test]
fn an_unknown_block_type_is_reported_with_the_known_ones() {
    let p = problems(&scenario("x", &block("id = \"x\"\ntype = \"jump\"")));
    assert!(p[0].key.starts_with("projects[0].scenarios[0].blocks[0]"), "{}", p[0].key);
    assert!(p[0].message.contains("jump") && p[0].message.contains("check_field"), "{}", p[0].message);
}

#[test]
fn duplicate_scenario_ids_and_duplicate_block_ids_are_reported() {
    let one = scenario("done", &(end("done") + &end("done")));
    let toml = format!("{one}[[projects.scenarios]]\nid = \"s\"\nstart = \"e\"\n{}", end("e"));
    assert_eq!(keys(&toml), ["projects[0].scenarios[1]", "projects[0].scenarios[0].blocks[1]"]);
}

#[test]
fn a_start_that_names_no_block_is_an_error() {
    assert_eq!(keys(&scenario("nowhere", &end("done"))), ["projects[0].scenarios[0].start"]);
}

#[test]
fn every_exit_that_names_no_block_is_reported_by_its_key() {
    let blocks = [
        block("id = \"c\"\ntype = \"check_field\"\nfield = \"phone\"\nfilled = \"x1\"\nempty = \"x2\""),
        block("id = \"m\"\ntype = \"message\"\ntext = \"hi\"\nnext = \"x3\""),
        block("id = \"i\"\ntype = \"identify\"\nnext = \"x4\""),
        ask("q", "on_invalid = \"continue\"\ninvalid = \"x5\"").replace("next = \"done\"", "next = \"x6\""),
    ]
    .concat();
    let at = "projects[0].scenarios[0].blocks";
    assert_eq!(
        keys(&scenario("c", &blocks)),
        [
            format!("{at}[0].filled"),
            format!("{at}[0].empty"),
            format!("{at}[1].next"),
            format!("{at}[2].next"),
            format!("{at}[3].next"),
            format!("{at}[3].invalid"),
        ]
    );
}

#[test]
fn a_regex_ask_needs_a_pattern_that_compiles_and_other_asks_take_none() {
    let missing = ask("a", "").replace("\"any\"", "\"regex\"");
    let broken = ask("b", "pattern = \"(unclosed\"").replace("\"any\"", "\"regex\"");
    let stray = ask("c", "pattern = \"x\"");
    let p = problems(&scenario("a", &[missing, broken, stray, end("done")].concat()));
    let at = "projects[0].scenarios[0].blocks";
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, [format!("{at}[0].pattern"), format!("{at}[1].pattern"), format!("{at}[2].pattern")]);
    assert!(p[1].message.contains("does not compile"), "{}", p[1].message);
    assert!(!p[1].message.contains('\n'), "one line for check-config: {}", p[1].message);
}

#[test]
fn the_invalid_exit_and_max_repeats_must_fit_on_invalid() {
    let blocks = [
        ask("a", "on_invalid = \"continue\""),
        ask("b", "invalid = \"done\""),
        ask("c", "on_invalid = \"continue\"\ninvalid = \"done\"\nmax_repeats = 2"),
        ask("d", "max_repeats = 0"),
        ask("e", "max_repeats = 2"),
        ask("f", "max_repeats = 2\ninvalid = \"done\""),
        end("done"),
    ]
    .concat();
    let at = "projects[0].scenarios[0].blocks";
    let found = keys(&scenario("a", &blocks));
    assert_eq!(
        found,
        [
            format!("{at}[0].invalid"),
            format!("{at}[1].invalid"),
            format!("{at}[2].max_repeats"),
            format!("{at}[3].max_repeats")
        ]
    );
}

#[test]
fn a_channel_scenario_must_be_one_of_its_project() {
    let toml = format!(
        "{}[[projects.channels]]\nid = \"c\"\nkind = \"vk\"\nscenario = \"other\"\n",
        scenario("done", &end("done"))
    );
    let p = problems(&toml);
    assert_eq!(p[0].key, "projects[0].channels[0].scenario");
    assert!(p[0].message.contains("other"));
}

#[test]
fn a_loop_without_an_ask_is_an_error_named_at_its_first_block() {
    let blocks = [
        block("id = \"m\"\ntype = \"message\"\ntext = \"hi\"\nnext = \"c\""),
        block("id = \"c\"\ntype = \"check_field\"\nfield = \"phone\"\nfilled = \"done\"\nempty = \"i\""),
        block("id = \"i\"\ntype = \"identify\"\nnext = \"m\""),
        end("done"),
    ]
    .concat();
    let p = problems(&scenario("m", &blocks));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "projects[0].scenarios[0].blocks[0]");
    assert!(p[0].message.contains("m, c, i") && p[0].message.contains("without an ask"), "{}", p[0].message);
}

#[test]
fn a_block_that_jumps_to_itself_is_a_loop() {
    let p = problems(&scenario("m", &block("id = \"m\"\ntype = \"message\"\ntext = \"hi\"\nnext = \"m\"")));
    assert_eq!(p[0].key, "projects[0].scenarios[0].blocks[0]");
}

#[test]
fn a_loop_through_an_ask_is_fine_because_the_bot_waits_there() {
    let blocks = [
        ask("q", "on_invalid = \"continue\"\ninvalid = \"sorry\""),
        block("id = \"sorry\"\ntype = \"message\"\ntext = \"Once more\"\nnext = \"q\""),
        end("done"),
    ]
    .concat();
    let config = Config::from_toml(&scenario("q", &blocks)).unwrap();
    assert!(config.warnings().is_empty());
}

#[test]
fn an_unreachable_block_is_a_warning_not_an_error() {
    let blocks =
        [end("done"), block("id = \"orphan\"\ntype = \"message\"\ntext = \"hi\"\nnext = \"done\"")].concat();
    let config = Config::from_toml(&scenario("done", &blocks)).unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].key, "projects[0].scenarios[0].blocks[1]");
    assert!(warnings[0].message.contains("orphan"));
    let text = explain_warnings(&warnings);
    assert!(text.starts_with("1 warning(s):\n  projects[0].scenarios[0].blocks[1]: "), "{text}");
}

#[test]
fn all_scenario_problems_are_reported_at_once() {
    let blocks = [ask("q", "on_invalid = \"continue\""), block("id = \"q\"\ntype = \"end\"")].concat();
    let k = keys(&scenario("nowhere", &blocks));
    let at = "projects[0].scenarios[0]";
    assert_eq!(
        k,
        [
            format!("{at}.blocks[1]"),
            format!("{at}.start"),
            format!("{at}.blocks[0].next"),
            format!("{at}.blocks[0].invalid")
        ]
    );
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
fn an_https_crm_url_is_accepted_and_a_ca_file_needs_https_and_a_readable_pem() {
    let https = CRM_PROJECT.replace("http://127", "https://127");
    assert!(Config::from_toml(&https).is_ok());
    let missing = https.replace("token =", "ca_file = \"/nonexistent/ca.pem\"\n  token =");
    let p = problems(&missing);
    assert_eq!(p[0].key, "projects[0].crm.ca_file");
    assert!(p[0].message.contains("cannot read"), "{}", p[0].message);
    let not_pem = tempfile_with("not a certificate");
    let p = problems(&https.replace("token =", &format!("ca_file = {:?}\n  token =", not_pem.path())));
    assert_eq!(p[0].key, "projects[0].crm.ca_file");
    let plain = CRM_PROJECT.replace("token =", &format!("ca_file = {:?}\n  token =", not_pem.path()));
    assert!(problems(&plain).iter().any(|p| p.message.contains("not https://")));
}

fn tempfile_with(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn a_crm_token_comes_from_the_variable_token_env_names_and_never_from_both() {
    let named =
        CRM_PROJECT.replace("token =", "token_env = \"APPEALFLOW_TEST_UNSET_CRM_TOKEN\"\n  # token =");
    let p = problems(&named);
    assert_eq!(p[0].key, "projects[0].crm.token_env");
    assert!(p[0].message.contains("APPEALFLOW_TEST_UNSET_CRM_TOKEN"), "{}", p[0].message);
    let both = CRM_PROJECT.replace("token =", "token_env = \"PATH\"\n  token =");
    assert!(problems(&both)[0].message.contains("keep one"));
    let from_path = CRM_PROJECT.replace("token =", "token_env = \"PATH\"\n  # token =");
    let config = Config::from_toml(&from_path).unwrap();
    let token = config.projects[0].crm.as_ref().unwrap().token.as_ref().unwrap().expose().to_string();
    assert_eq!(token, std::env::var("PATH").unwrap());
}

#[test]
fn a_misspelt_crm_key_is_an_error() {
    let p = problems(&CRM_PROJECT.replace("token =", "tokn ="));
    assert_eq!(p[0].key, "projects[0].crm.tokn");
}

#[test]
fn api_problems_are_named_by_key_and_never_quote_a_token() {
    let toml = r#"
[api]
listen = "localhost-8080"
  [[api.tokens]]
  token = "short"
  projects = ["acme", "nope"]
  [[api.tokens]]
  token = "a-good-token"
  projects = []
[[projects]]
id = "acme"
"#;
    let p = problems(toml);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["api.listen", "api.tokens[0].token", "api.tokens[0].projects", "api.tokens[1].projects"]
    );
    assert!(p.iter().all(|p| !p.message.contains("short") && !p.message.contains("a-good-token")), "{p:?}");
}

#[test]
fn a_listening_api_needs_a_token_and_a_token_is_never_printed_by_debug() {
    let k = keys("[api]\nlisten = \"127.0.0.1:8080\"\n[[projects]]\nid = \"acme\"\n");
    assert_eq!(k, ["api.tokens"]);
    let token = ApiToken {
        token: "secret-value".into(),
        projects: vec!["*".into()],
        write: false,
        operator: None,
        ingest: false,
    };
    assert!(!format!("{token:?}").contains("secret-value"));
}
