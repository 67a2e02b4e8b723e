//! The operator console in a real browser: Debian's Chromium driven over WebDriver
//! (chromedriver), against `appealflow api`'s router serving the replayed sample. Each step
//! writes a screenshot under the target dir's tmp (printed) for a person to look at.
//!
//! Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver); `scripts/test.sh`
//! installs them where missing. `APPEALFLOW_CHROMIUM` and `APPEALFLOW_CHROMEDRIVER` point
//! elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::config::Config;
use appealflow::store::Store;
use fantoccini::{Client, ClientBuilder, Locator};

const TOKEN: &str = "demo-token";
/// The appeals the card's timeline lists.
const APPEALS: &str = "#card tbody button[data-appeal]";

/// A chromedriver of our own on a free port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let bin = std::env::var("APPEALFLOW_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin}: {e}; install Debian's chromium and chromium-driver (scripts/test.sh does)")
            });
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while reqwest::get(format!("{}/status", driver.url)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    async fn browser(&self) -> Client {
        let chromium = std::env::var("APPEALFLOW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let options = serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US", "--no-first-run"],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await.expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample replayed into a SQLite store, served by the API and console; its base URL.
async fn serve_sample(dir: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = std::fs::read_to_string(root.join("config/example.toml")).unwrap();
    let config = Arc::new(Config::from_toml(&toml).unwrap());
    let url = format!("sqlite://{}", dir.join("console.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let sample = root.join("examples/sample.jsonl").display().to_string();
    appealflow::replay::replay(config.clone(), store.clone(), &[sample], &mut std::io::sink(), false)
        .await
        .unwrap();
    store.close().await;
    let reader = Store::connect_reader(&url, 2).await.unwrap();
    let addr = appealflow::api::serve("127.0.0.1:0", config, reader, Default::default()).await.unwrap();
    format!("http://{addr}")
}

struct Steps {
    browser: Client,
    shots: PathBuf,
    n: usize,
}

impl Steps {
    /// The first element `css` finds, once it is there and shown.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let started = Instant::now();
        loop {
            if let Ok(el) = self.browser.find(Locator::Css(css)).await {
                if el.is_displayed().await.unwrap_or(false) {
                    return el;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(15), "nothing shown matches {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of `css` once it contains `want`.
    async fn text_with(&self, css: &str, want: &str) -> String {
        let started = Instant::now();
        loop {
            let text = match self.browser.find(Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(want) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{css} never said {want:?}; it says {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pages the timeline until it lists appeal `i` (from 0); false when it has no more.
    async fn list_appeal(&self, i: usize) -> bool {
        let started = Instant::now();
        while self.count(APPEALS).await <= i {
            let more = self.browser.find(Locator::Css("#timeline-more")).await.unwrap();
            if !more.is_displayed().await.unwrap() {
                return false;
            }
            more.click().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(started.elapsed() < Duration::from_secs(15), "the timeline never listed appeal {i}");
        }
        true
    }

    async fn count(&self, css: &str) -> usize {
        self.browser.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
    }

    async fn shot(&mut self, name: &str) {
        self.n += 1;
        let png = self.browser.screenshot().await.unwrap();
        let path = self.shots.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_client_by_a_phone_spelling_and_reads_the_card_timeline_appeal_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_sample(dir.path()).await;
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut s = Steps { browser: driver.browser().await, shots, n: 0 };

    // One appeal per page, so paging is exercised on the sample's timeline.
    s.browser.goto(&format!("{base}/?page=1")).await.unwrap();
    s.find("#login-token").await.send_keys("not-the-token").await.unwrap();
    s.find("#login-form button[type=submit]").await.click().await.unwrap();
    s.text_with("#login-error", "token was not accepted").await;
    s.shot("wrong-token").await;

    let token = s.find("#login-token").await;
    token.clear().await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    s.find("#login-form button[type=submit]").await.click().await.unwrap();

    s.find("#search-input").await.send_keys("8 999 123 45 67").await.unwrap();
    let found = s.text_with("#results", "Alfred").await;
    assert!(found.contains("phone +7 999 123-45-67"), "the result says what matched: {found}");
    s.shot("search-by-phone").await;

    s.find("#results button").await.click().await.unwrap();
    s.text_with("#card-title", "Alfred").await;
    let card = s.text_with("#card", "Channels").await;
    for want in ["acme-tg", "acme-wa", "Merges", "Absorbed ids"] {
        assert!(card.contains(want), "the card shows {want}: {card}");
    }
    assert!(
        ["open until", "templates only", "closed", "no reply limit"].iter().any(|w| card.contains(w)),
        "each channel has its reply window: {card}"
    );
    let merge = s.text_with("#merges", "joined by rule").await;
    assert!(merge.contains("by-phone on +7 999 123-45-67"), "the ledger says how: {merge}");
    s.shot("card").await;

    assert_eq!(s.count(APPEALS).await, 1, "one appeal per page");
    assert!(s.list_appeal(1).await, "a second page of the timeline");
    s.shot("timeline-paged").await;

    // Alfred's first appeal is his Telegram one, with the photo of the declined payment.
    let mut opened = false;
    for i in 0.. {
        if !s.list_appeal(i).await {
            break;
        }
        let buttons = s.browser.find_all(Locator::Css(APPEALS)).await.unwrap();
        buttons[i].click().await.unwrap();
        s.find("#appeal .chat").await;
        if s.text_with("#appeal", "Appeal #").await.contains("decline.png") {
            opened = true;
            break;
        }
        s.browser.back().await.unwrap();
        s.find("#card-title").await;
    }
    assert!(opened, "an appeal of Alfred's shows the photo he sent");
    let link = s.find("#appeal a[href$='decline.png']").await;
    assert!(link.attr("href").await.unwrap().unwrap().starts_with("https://"));
    assert!(s.count("#appeal .group.client").await >= 1, "client messages are grouped bubbles");
    assert!(s.count("#appeal .group.operator, #appeal .group.bot, #appeal .system").await >= 1);
    s.shot("appeal").await;

    s.browser.set_window_size(390, 844).await.unwrap();
    s.browser.back().await.unwrap();
    s.text_with("#card-title", "Alfred").await;
    s.shot("card-phone-width").await;

    // Nothing the page read came from anywhere but the console's files and the documented API.
    let doc: serde_json::Value =
        reqwest::get(format!("{base}/v1/openapi.json")).await.unwrap().json().await.unwrap();
    let templates: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let read = s
        .browser
        .execute("return performance.getEntriesByType('resource').map(e => e.name)", vec![])
        .await
        .unwrap();
    let read: Vec<String> = serde_json::from_value(read).unwrap();
    assert!(
        read.iter().any(|u| u.contains("/v1/projects/acme/clients")),
        "the console read the API: {read:?}"
    );
    for url in &read {
        let path = url.strip_prefix(&base).unwrap_or_else(|| panic!("{url} is not served by appealflow"));
        let path = path.split('?').next().unwrap();
        let documented = templates.iter().any(|t| matches_template(t, path));
        assert!(
            path.starts_with("/console/") || documented,
            "{path} is neither a console file nor in the API"
        );
    }
    s.browser.close().await.unwrap();
}

/// Whether `path` is an instance of an OpenAPI path template (`{name}` matches one segment).
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

#[tokio::test]
async fn the_console_is_served_with_a_policy_that_loads_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_sample(dir.path()).await;
    for (path, kind) in
        [("/", "text/html"), ("/console/app.js", "text/javascript"), ("/console/style.css", "text/css")]
    {
        let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let page = reqwest::get(format!("{base}/")).await.unwrap().text().await.unwrap();
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");
}

/// The sample replayed into a SQLite store, then `serve` over it: the console can act.
async fn serve_sample_acting(dir: &Path) -> (appealflow::serve::Service, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = std::fs::read_to_string(root.join("config/example.toml")).unwrap();
    let mut config = Config::from_toml(&toml).unwrap();
    config.api.listen = "127.0.0.1:0".into();
    let config = Arc::new(config);
    let url = format!("sqlite://{}", dir.join("acting.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let sample = root.join("examples/sample.jsonl").display().to_string();
    appealflow::replay::replay(config.clone(), store.clone(), &[sample], &mut std::io::sink(), false)
        .await
        .unwrap();
    let service = appealflow::serve::Service::start(config, store, Box::new(std::io::sink())).await.unwrap();
    let base = format!("http://{}", service.addr);
    (service, base)
}

/// Alfred writes on Telegram, as a gateway posts it; dated now (the operator's commands are,
/// and an appeal idle for a day closes on them).
async fn alfred_writes(base: &str, id: &str, text: &str) {
    let input = serde_json::json!({"type": "message", "message_id": id, "project_id": "acme",
        "channel_id": "acme-tg", "sent_at": chrono::Utc::now().to_rfc3339(), "visitor": {"id": "513377"},
        "content": {"kind": "text", "text": text}});
    let url = format!("{base}/v1/projects/acme/inputs");
    let posted =
        reqwest::Client::new().post(url).bearer_auth("demo-gateway-token").json(&input).send().await.unwrap();
    assert_eq!(posted.status(), 200);
}

/// Every outbound record the feed keeps.
async fn outbound_feed(base: &str) -> serde_json::Value {
    let url = format!("{base}/v1/projects/acme/feed?topic=outbound&limit=1000");
    reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

/// The card as the read API answers it.
async fn read_card(base: &str, id: &str) -> serde_json::Value {
    let url = format!("{base}/v1/projects/acme/clients/{id}");
    reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

impl Steps {
    /// Types `text` into the field `css` (emptied first), until the field holds it: a card
    /// drawn again meanwhile brings a fresh, empty form.
    async fn type_in(&self, css: &str, text: &str) {
        let started = Instant::now();
        loop {
            // The page draws the view again when an event about it commits: an element found
            // may be gone the moment after (a stale reference), so each step may be retried.
            let field = self.find(css).await;
            let typed = async {
                field.clear().await?;
                field.send_keys(text).await?;
                field.prop("value").await
            };
            if typed.await.ok().flatten().as_deref() == Some(text) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "{css} never held {text:?}");
        }
    }

    /// Clicks `css`, then waits for the outcome line to say `want` (the previous outcome is
    /// wiped first); its text.
    async fn act(&self, css: &str, want: &str) -> String {
        self.browser.execute("document.getElementById('outcome').textContent = ''", vec![]).await.unwrap();
        let started = Instant::now();
        while self.find(css).await.click().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(15), "{css} could not be clicked");
        }
        self.text_with("#outcome", want).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_acts_on_a_card_in_the_browser_and_reads_each_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (service, base) = serve_sample_acting(dir.path()).await;
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-acting-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut s = Steps { browser: driver.browser().await, shots, n: 0 };
    s.browser.goto(&base).await.unwrap();
    s.type_in("#login-token", "demo-operator-token").await;
    s.find("#login-form button[type=submit]").await.click().await.unwrap();
    s.find("#search-input").await.send_keys("alfred").await.unwrap();
    s.text_with("#results", "Alfred").await;
    s.find("#results button").await.click().await.unwrap();
    s.text_with("#card-title", "Alfred").await;
    let id =
        s.browser.current_url().await.unwrap().fragment().unwrap().rsplit('/').next().unwrap().to_string();

    // A name that looks like markup is a name: shown as text, stored as typed.
    let hostile = "<img src=x onerror=alert(1)>";
    s.type_in("#rename-name", hostile).await;
    s.act("#rename button[type=submit]", "Rename: done").await;
    assert_eq!(s.text_with("#card-title", "<img").await, hostile);
    assert_eq!(s.count("#card img, #outcome img").await, 0, "no markup from what was typed");
    assert_eq!(read_card(&base, &id).await["name"], hostile);

    s.type_in("#tag-tag", "vip").await;
    s.act("#tag button[type=submit]", "Tag: done").await;
    s.type_in("#comment-text", "Prefers calls after 6 PM").await;
    s.act("#comment button[type=submit]", "Comment: done").await;
    let card = read_card(&base, &id).await;
    assert!(card["tags"].as_array().unwrap().contains(&"vip".into()), "{card}");
    assert_eq!(card["comments"][0]["text"], "Prefers calls after 6 PM");
    s.text_with("#card", "Prefers calls after 6 PM").await;

    // Three phones by hand; the fourth is refused and the page says why.
    let mut refused = String::new();
    for n in 1..=4 {
        s.type_in("#add-contact-value", &format!("+7 916 000-00-0{n}")).await;
        let said = s.act("#add-contact button[type=submit]", "Add contact:").await;
        if said.contains("refused") {
            refused = said;
            break;
        }
        s.text_with("#contacts", &format!("+7 916 000-00-0{n}")).await;
    }
    assert!(refused.contains("3 phone contacts added by hand"), "the fourth phone: {refused}");
    s.shot("fourth-phone-refused").await;
    let manual = |card: &serde_json::Value| {
        card["contacts"]["phone"].as_array().unwrap().iter().filter(|v| v["source"] == "manual").count()
    };
    assert_eq!(manual(&read_card(&base, &id).await), 3);
    // Values the API refuses (10 kB, control characters): its answer in words, and the page
    // goes on working.
    for bad in ["x".repeat(10_000), "+7 916\u{0}000".to_string(), "a\u{7}b@example.org".to_string()] {
        let set = "document.getElementById('add-contact-value').value = arguments[0]";
        s.browser.execute(set, vec![serde_json::json!(bad)]).await.unwrap();
        let said = s.act("#add-contact button[type=submit]", "Add contact: ").await;
        assert!(!said.contains(": done") && said.len() > 30, "refused with the reason in words: {said}");
    }
    assert_eq!(manual(&read_card(&base, &id).await), 3, "nothing was added");
    s.act("#contacts button[data-remove='phone:+79160000001']", "Remove contact: done").await;
    assert_eq!(manual(&read_card(&base, &id).await), 2);
    s.find("#contacts button[data-edit='phone:+79160000002']").await.click().await.unwrap();
    s.type_in("#edit-phone-value", "8 916 000-00-09").await;
    s.act("#edit-phone button[type=submit]", "Edit contact: done").await;
    let phones = read_card(&base, &id).await["contacts"]["phone"].clone();
    let values: Vec<&str> = phones.as_array().unwrap().iter().map(|v| v["value"].as_str().unwrap()).collect();
    assert!(values.contains(&"+79160000009") && !values.contains(&"+79160000002"), "{values:?}");
    s.act("#contacts button[data-copy='phone:+79160000009']", "Cop").await;
    s.type_in("#field-field", "preferred_branch").await;
    s.type_in("#field-value", "Nevsky 28").await;
    s.act("#field button[type=submit]", "Set field: done").await;
    assert_eq!(read_card(&base, &id).await["fields"]["preferred_branch"][0]["display"], "Nevsky 28");
    s.text_with("#send-window", "Reply window").await;
    s.type_in("#send-text", "Your new card is ready").await;
    s.act("#send button[type=submit]", "Send message: done").await;
    let outbound = outbound_feed(&base).await;
    let sent = outbound["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["value"]["text"] == "Your new card is ready");
    assert!(sent, "the message went out: {outbound}");

    // Another operator changes the card: the page shows it without a reload.
    let other = serde_json::json!({"type": "tag_client", "client": {"client_id": id}, "tag": "callback"});
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/projects/acme/commands"))
        .bearer_auth("demo-operator-token")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    s.text_with("#card", "callback").await;
    s.type_in("#rename-name", "Alfred Hitchcock").await;
    s.act("#rename button[type=submit]", "Rename: done").await;

    // The merge by phone, undone from the ledger.
    s.act("#merges button[data-merge]", "Split: done").await;
    let report = s.text_with("#outcome", "got back 1 visitor").await;
    assert!(report.contains("Kept with this card") && report.contains("tag vip"), "what stayed: {report}");
    s.text_with("#merges", "split by op-1").await;
    s.browser.execute("document.getElementById('outcome').scrollIntoView()", vec![]).await.unwrap();
    s.shot("split").await;
    let card = read_card(&base, &id).await;
    let restored = card["blocked_merges"][0].as_str().expect("the split keeps a card apart").to_string();

    // Merging them again: find the card, preview, and a stale preview refreshed on confirm.
    s.type_in("#merge-find-q", "79991234567").await;
    s.find("#merge-find button[type=submit]").await.click().await.unwrap();
    s.find(&format!("#merge-candidates button[data-candidate='{restored}']")).await.click().await.unwrap();
    s.text_with("#preview", "The card the merge makes").await;
    s.shot("merge-preview").await;
    let other =
        serde_json::json!({"type": "tag_client", "client": {"client_id": restored}, "tag": "whatsapp"});
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/projects/acme/commands"))
        .bearer_auth("demo-operator-token")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let stale = s.act("#merge-confirm", "Merge: not done").await;
    assert!(stale.contains("the preview below is the fresh one"), "{stale}");
    s.act("#merge-confirm", "Merge: done").await;
    let card = read_card(&base, &id).await;
    assert!(card["absorbed_ids"].as_array().unwrap().contains(&restored.clone().into()), "{card}");
    assert!(card["blocked_merges"].as_array().unwrap().is_empty(), "the operator's merge lifts the block");
    assert!(
        card["tags"].as_array().unwrap().contains(&"whatsapp".into()),
        "merged what the fresh preview showed"
    );

    // WhatsApp, days after he last wrote there: only an approved template may go, picked from
    // the project's templates with its parameters.
    s.find("#send-channel option[value='acme-wa']").await.click().await.unwrap();
    s.text_with("#send-window", "only an approved template").await;
    s.find("#send-template option[value='limit_changed']").await.click().await.unwrap();
    s.type_in("#send-param-limit", "500 000 ₽").await;
    s.type_in("#send-param-card", "*4417").await;
    s.shot("template-picker").await;
    s.act("#send button[type=submit]", "Send message: done").await;
    let outbound = outbound_feed(&base).await;
    let sent = outbound["records"].as_array().unwrap().iter().any(|r| {
        r["value"]["template"]["name"] == "limit_changed"
            && r["value"]["template"]["params"]["limit"] == "500 000 ₽"
    });
    assert!(sent, "the template went out with its parameters: {outbound}");

    // A new client, from the search side: the console opens the card it made.
    s.find("#create-client summary").await.click().await.unwrap();
    s.type_in("#create-name", "Вера Павлова").await;
    s.type_in("#create-phone", "8 921 555-44-33").await;
    s.act("#create button[type=submit]", "Create client: done").await;
    s.text_with("#card-title", "Вера Павлова").await;
    s.text_with("#contacts", "8 921 555-44-33").await;

    // He writes again (a gateway posts it), which opens an appeal: category, tag, comment,
    // assignment, a scenario the project lacks, closing.
    alfred_writes(&base, "tg-9901", "Is my card ready?").await;
    s.browser.goto(&format!("{base}/#/clients/{id}")).await.unwrap();
    s.text_with("#card-title", "Alfred").await;
    s.text_with("section[aria-labelledby=s-timeline] tbody", "open").await;
    s.find(APPEALS).await.click().await.unwrap();
    let number = s.text_with("#appeal-title", "Appeal #").await.trim_start_matches("Appeal #").to_string();
    s.type_in("#category-category", "cards").await;
    s.act("#category button[type=submit]", "Category: done").await;
    s.type_in("#appeal-tag-tag", "urgent").await;
    s.act("#appeal-tag button[type=submit]", "Tag: done").await;
    s.type_in("#appeal-comment-text", "Called back, card reissued").await;
    s.act("#appeal-comment button[type=submit]", "Comment: done").await;
    s.type_in("#assign-group", "second-line").await;
    s.act("#assign button[type=submit]", "Assign: done").await;
    // A new message on the open appeal appears without a reload, and what is being typed stays.
    s.type_in("#scenario-scenario_id", "no-such-scenario").await;
    alfred_writes(&base, "tg-9902", "Hello? Anyone there?").await;
    s.text_with("#appeal .chat", "Hello? Anyone there?").await;
    let kept = s.find("#scenario-scenario_id").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("no-such-scenario"), "the redraw keeps what was typed");
    let refused = s.act("#scenario button[type=submit]", "Start scenario:").await;
    assert!(refused.contains("refused"), "{refused}");
    let appeal_url = format!("{base}/v1/projects/acme/appeals/{number}");
    let read = |url: String| async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let appeal = read(appeal_url.clone()).await;
    assert_eq!(appeal["category"], "cards", "{appeal}");
    assert!(appeal["tags"].as_array().unwrap().contains(&"urgent".into()));
    assert_eq!(appeal["group"], "second-line");
    assert!(appeal["comments"].as_array().unwrap().iter().any(|c| c["text"] == "Called back, card reissued"));
    s.shot("appeal-acted").await;
    assert_eq!(appeal["status"], "open");
    s.act("#close button[type=submit]", "Close: done").await;
    assert_eq!(read(appeal_url).await["status"], "closed");
    s.browser.close().await.unwrap();
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_report_draws_each_block_with_its_runs_and_greys_out_what_none_reached() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = std::fs::read_to_string(root.join("examples/crm-demo.toml")).unwrap();
    // A block no run can reach (nothing leads to it): the report greys it out.
    let survey = "    [[projects.scenarios.blocks]]\n    id = \"survey\"\n    type = \"message\"\n    \
                  text = \"How did we do?\"\n    next = \"done\"\n";
    let toml =
        format!("{toml}\n{survey}[api]\n  [[api.tokens]]\n  token = \"{TOKEN}\"\n  projects = [\"*\"]\n");
    let config = Arc::new(Config::from_toml(&toml).unwrap());
    let url = format!("sqlite://{}", dir.path().join("report.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let demo = root.join("examples/crm-demo.jsonl").display().to_string();
    appealflow::replay::replay(config.clone(), store.clone(), &[demo], &mut std::io::sink(), false)
        .await
        .unwrap();
    let entries = store.bot_block_entries().await.unwrap();
    store.close().await;
    let reader = Store::connect_reader(&url, 2).await.unwrap();
    let addr =
        appealflow::api::serve("127.0.0.1:0", config.clone(), reader, Default::default()).await.unwrap();
    let base = format!("http://{addr}");

    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-acting-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut s = Steps { browser: driver.browser().await, shots, n: 10 };
    s.browser.goto(&base).await.unwrap();
    let project = s.find("#login-project").await;
    project.clear().await.unwrap();
    project.send_keys(&config.projects[0].id).await.unwrap();
    s.find("#login-token").await.send_keys(TOKEN).await.unwrap();
    s.find("#login-form button[type=submit]").await.click().await.unwrap();
    s.find("#scenarios-link").await.click().await.unwrap();
    s.text_with("#report", "Scenario").await;
    let scenario = &config.projects[0].scenarios[0];
    let counted =
        entries.get(&(config.projects[0].id.clone(), scenario.id.clone())).cloned().unwrap_or_default();
    assert!(!counted.is_empty(), "the demo's runs entered blocks");
    assert!(!counted.contains_key("survey"));
    for block in &scenario.blocks {
        let css = format!("#report li.block[data-block='{}']", block.id());
        let shown = s.find(&css).await;
        let text = shown.text().await.unwrap();
        let class = shown.attr("class").await.unwrap().unwrap_or_default();
        match counted.get(block.id()).copied().unwrap_or(0) {
            0 => assert!(
                text.contains("never reached") && class.contains("unreached"),
                "{}: {text}",
                block.id()
            ),
            n => assert!(
                text.contains(&format!("{n} run")) && !class.contains("unreached"),
                "{}: {text}",
                block.id()
            ),
        }
    }
    s.shot("scenario-report").await;
    s.browser.close().await.unwrap();
}

impl Steps {
    /// Signs in with the operator's token and opens Alfred's card from the search, by keyboard
    /// alone: typing, the arrow key to the first result, Enter. Its id.
    async fn open_alfred_by_keyboard(&self, base: &str) -> String {
        self.browser.goto(base).await.unwrap();
        self.type_in("#login-token", "demo-operator-token").await;
        self.find("#login-token").await.send_keys(ENTER).await.unwrap();
        self.find("#search-input").await.send_keys("alfred").await.unwrap();
        self.text_with("#results", "Alfred").await;
        self.find("#search-input").await.send_keys(ARROW_DOWN).await.unwrap();
        self.browser.active_element().await.unwrap().send_keys(ENTER).await.unwrap();
        self.text_with("#card-title", "Alfred").await;
        self.browser.current_url().await.unwrap().fragment().unwrap().rsplit('/').next().unwrap().to_string()
    }

    /// Presses Tab until the field `id` has the focus: it can be reached without a mouse.
    async fn tab_to(&self, id: &str) {
        for _ in 0..80 {
            let focused = self.browser.active_element().await.unwrap();
            if focused.attr("id").await.unwrap().as_deref() == Some(id) {
                return;
            }
            focused.send_keys(TAB).await.unwrap();
        }
        panic!("Tab never reached #{id}");
    }
}

/// WebDriver's codes of the keys (`fantoccini::key::Key`).
const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";
const ARROW_DOWN: &str = "\u{E015}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_begun_before_a_second_tab_renamed_the_card_is_refused_as_stale_by_keyboard_on_a_phone() {
    let dir = tempfile::tempdir().unwrap();
    let (_service, base) = serve_sample_acting(dir.path()).await;
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-stale-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut s = Steps { browser: driver.browser().await, shots, n: 0 };
    s.browser.set_window_size(390, 844).await.unwrap();
    let id = s.open_alfred_by_keyboard(&base).await;
    let overflow: serde_json::Value = s
        .browser
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "the card is wider than a 390 px phone by {overflow} px");

    // The first tab begins a rename and leaves it typed.
    let first = s.browser.window().await.unwrap();
    s.tab_to("rename-name").await;
    s.browser.active_element().await.unwrap().send_keys("Alfred, as the first tab saw him").await.unwrap();

    // A second tab renames the card meanwhile.
    let second = s.browser.new_window(true).await.unwrap().handle;
    s.browser.switch_to_window(second).await.unwrap();
    s.open_alfred_by_keyboard(&base).await;
    s.type_in("#rename-name", "Alfred Hitchcock, renamed in the second tab").await;
    s.act("#rename button[type=submit]", "Rename: done").await;
    s.browser.close_window().await.unwrap();
    s.browser.switch_to_window(first).await.unwrap();

    // The first tab draws the change live and keeps what was typed; sent by Enter, the rename
    // carries the revision it was begun at and is refused, never overwriting the other's.
    s.text_with("#card-title", "renamed in the second tab").await;
    let kept = s.find("#rename-name").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("Alfred, as the first tab saw him"));
    s.browser.execute("document.getElementById('outcome').textContent = ''", vec![]).await.unwrap();
    s.find("#rename-name").await.send_keys(ENTER).await.unwrap();
    let said = s.text_with("#outcome", "Rename: not done").await;
    assert!(said.contains("Someone changed this card meanwhile"), "{said}");
    s.shot("stale-rename-on-a-phone").await;
    assert_eq!(read_card(&base, &id).await["name"], "Alfred Hitchcock, renamed in the second tab");

    // Typed again on the fresh card, it goes through.
    s.type_in("#rename-name", "Alfred J. Hitchcock").await;
    s.find("#rename-name").await.send_keys(ENTER).await.unwrap();
    s.text_with("#outcome", "Rename: done").await;
    assert_eq!(read_card(&base, &id).await["name"], "Alfred J. Hitchcock");
}
