//! The dashboard in a real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) by fantoccini. Signing in and out, the pages of a seeded registry, a live update
//! without reload, actions for an operator, none for a viewer, forged posts refused.
//!
//! Screenshots go to `$DEPOT_SCREENSHOTS` when it names a directory (docs/ keeps the README's).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::*;
use crate::registry::Registry;

/// chromedriver and a headless Chromium session; both end with it.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    fn start() -> Browser {
        Browser::start_with(&[])
    }

    /// Chromium with `extra` flags.
    fn start_with(extra: &[&str]) -> Browser {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/install installs it)");
        let profile = tempfile::tempdir().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = runtime
            .block_on(async {
                // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await
            })
            .expect("a Chromium session");
        Browser { runtime, client: Some(client), driver, _profile: profile }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).unwrap();
    }

    fn path(&self) -> String {
        self.runtime.block_on(self.client().current_url()).unwrap().path().to_owned()
    }

    fn text(&self, css: &str) -> String {
        match self.runtime.block_on(async { self.client().find(Locator::Css(css)).await?.text().await }) {
            Ok(text) => text,
            Err(error) => {
                let page = self.runtime.block_on(self.client().source()).unwrap_or_default();
                panic!("`{css}` at {}: {error}\n{page}", self.path())
            }
        }
    }

    fn count(&self, css: &str) -> usize {
        self.runtime.block_on(self.client().find_all(Locator::Css(css))).unwrap().len()
    }

    fn click(&self, css: &str) {
        self.runtime.block_on(async { self.client().find(Locator::Css(css)).await?.click().await }).unwrap();
    }

    fn type_into(&self, css: &str, text: &str) {
        self.runtime.block_on(async { self.client().find(Locator::Css(css)).await?.send_keys(text).await }).unwrap();
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.runtime.block_on(self.client().execute(script, Vec::new())).unwrap()
    }

    /// Waits up to `within` for the text of `css` to contain `needle`.
    fn wait_text(&self, css: &str, needle: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let text = self
                .runtime
                .block_on(async { self.client().find(Locator::Css(css)).await?.text().await })
                .unwrap_or_default();
            if text.contains(needle) {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "`{css}` never showed {needle:?} within {within:?}: {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Signs in with `token` and waits for the page that follows.
    fn sign_in(&self, url: &str, token: &str) {
        self.goto(&format!("{url}/ui/sign-in"));
        self.script("document.body.dataset.before = 'yes';");
        self.type_into("#token", token);
        self.click("main form button[type=submit]");
        self.wait_loaded();
    }

    /// Waits for a navigation a click started: the old page's marker is gone.
    fn wait_loaded(&self) {
        let started = Instant::now();
        loop {
            let done = self.script("return document.readyState === 'complete' && !document.body.dataset.before;");
            if done == serde_json::json!(true) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the page did not load");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Clicks `css` and waits for the page it leads to.
    fn click_to(&self, css: &str) {
        self.script("document.body.dataset.before = 'yes';");
        self.click(css);
        self.wait_loaded();
    }

    /// A PNG of the page, into `$DEPOT_SCREENSHOTS/NAME.png` when set, else into `dir`.
    fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self.runtime.block_on(self.client().screenshot()).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        let dir = std::env::var_os("DEPOT_SCREENSHOTS").map_or_else(|| dir.to_owned(), PathBuf::from);
        let path = dir.join(format!("{name}.png"));
        fs_err::write(&path, png).unwrap();
        path
    }
}

/// A tree of one file, `app.txt`.
fn tree(ctx: &TestContext, dir: &str, text: &str) -> String {
    ctx.tree(dir, &[("app.txt", text)]).display().to_string()
}

fn token(ctx: &TestContext, registry: &Registry, name: &str, role: &str, pattern: Option<&str>) -> String {
    let mut args = vec!["token", "create", name, "--role", role];
    if let Some(pattern) = pattern {
        args.extend(["--config", pattern]);
    }
    registry.run(ctx, &args).success().stdout.trim().to_owned()
}

/// One cycle of an agent of `config` named `host`.
fn agent_once(ctx: &TestContext, registry: &Registry, token: &str, config: &str, host: &str) {
    let root = ctx.path(&format!("hosts/{host}"));
    let root = root.display().to_string();
    registry.run_as(ctx, token, &["agent", "--config", config, "--name", host, "--once", "--root", &root]).success();
}

/// web on a pipeline dev → prod (dev runs 1.1.0, prod 1.0.0, dev-1 active on dev), and a
/// configuration `tools` outside it.
fn seeded(ctx: &TestContext) -> (Registry, String) {
    let registry = Registry::start(ctx, &[]);
    registry.run(ctx, &["push", "web", "1.0.0", &tree(ctx, "v1", "v1")]).success();
    registry
        .run(ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "dev", "--stage", "prod"])
        .success();
    registry.run(ctx, &["promote", "web", "--to", "prod"]).success();
    registry.run(ctx, &["push", "web", "1.1.0", &tree(ctx, "v2", "v2")]).success();
    registry.run(ctx, &["push", "tools", "1", &tree(ctx, "t", "t")]).success();
    registry.run(ctx, &["config", "create", "tools", "--layer", "tools:1"]).success();
    let agent = token(ctx, &registry, "fleet", "agent", Some("*"));
    agent_once(ctx, &registry, &agent, "web-dev", "dev-1");
    (registry, agent)
}

fn revision(ctx: &TestContext, registry: &Registry, config: &str) -> u64 {
    registry.run(ctx, &["config", "show", config, "--json"]).success().json()["revision"].as_u64().unwrap()
}

#[test]
fn an_operator_signs_in_sees_the_fleet_live_acts_and_signs_out() {
    let ctx = TestContext::new();
    let (registry, agent) = seeded(&ctx);
    let ops = token(&ctx, &registry, "ops", "operator", None);
    let browser = Browser::start();

    // Signed out: every page leads to the sign-in form. Agent tokens and unknown ones are refused.
    browser.goto(&format!("{}/ui/configs/tools", registry.url));
    assert_eq!(browser.path(), "/ui/sign-in");
    browser.sign_in(&registry.url, &agent);
    assert!(browser.text("main").contains("Agent tokens cannot sign in"), "{}", browser.text("main"));
    browser.sign_in(&registry.url, "ops.wrong");
    assert!(browser.text("main").contains("Unknown token"));
    browser.sign_in(&registry.url, &ops);
    assert_eq!(browser.path(), "/ui/", "{}", browser.text("body"));

    // The overview: each stage with its version, revision and agents; configurations below.
    let dev = browser.text("article[data-stage=dev]");
    assert!(dev.contains("web 1.1.0") && dev.contains("1/1 active"), "{dev}");
    let prod = browser.text("article[data-stage=prod]");
    assert!(prod.contains("web 1.0.0") && prod.contains("no agents"), "{prod}");
    assert!(browser.text("tr[data-config=tools]").contains("tools"));
    assert!(browser.text("header").contains("ops (operator)"));

    // Live: an agent of prod reports, and the page shows it without reloading.
    browser.script("window.depotNotReloaded = true;");
    agent_once(&ctx, &registry, &agent, "web-prod", "prod-1");
    let took = browser.wait_text("article[data-stage=prod]", "1/1 active", Duration::from_secs(2));
    assert_eq!(browser.script("return window.depotNotReloaded === true;"), serde_json::json!(true), "no reload");
    eprintln!("live update shown {took:?} after the report");
    browser.screenshot(ctx.temp.path(), "dashboard-overview");

    // Promote: a confirmation that says what will happen, then the change, under ops' name.
    browser.click_to("article[data-stage=prod] form.action button");
    assert_eq!(browser.path(), "/ui/pipelines/web/promote");
    let confirm = browser.text("p.confirm");
    assert!(confirm.contains("1 host of web/prod will switch to web 1.1.0"), "{confirm}");
    browser.click_to("main form button.primary");
    assert_eq!(browser.path(), "/ui/");
    assert!(browser.text("article[data-stage=prod]").contains("web 1.1.0"));
    let history = registry.run(&ctx, &["history", "web", "--json"]).success().json();
    let promoted = history.as_array().unwrap().iter().rev().find(|e| e["kind"] == "promote").expect("a promotion");
    assert_eq!(promoted["actor"], "ops");

    // The configuration: layers, agents with their state, history with a diff.
    agent_once(&ctx, &registry, &agent, "web-prod", "prod-1");
    browser.goto(&format!("{}/ui/configs/web-prod?from=2&to=3", registry.url));
    assert!(browser.text("tr[data-host=prod-1]").contains("active"));
    let diff = browser.text("section.diff");
    assert!(diff.contains("1.0.0") && diff.contains("1.1.0"), "{diff}");
    browser.screenshot(ctx.temp.path(), "dashboard-configuration");

    // Roll back, with the confirmation's count of hosts.
    browser.click_to("form.action[action$='/rollback'] button");
    assert!(browser.text("p.confirm").contains("1 host of web-prod will switch back to web 1.0.0"));
    browser.click_to("main form button.primary");
    assert_eq!(revision(&ctx, &registry, "web-prod"), 4);

    // The component: versions newest first; deprecate one with a reason, then undo it.
    browser.goto(&format!("{}/ui/components/web", registry.url));
    assert_eq!(browser.count("table.versions tbody tr"), 2);
    assert!(browser.text("table.versions tbody tr:first-child").contains("1.1.0"));
    browser.type_into("#reason-1\\.0\\.0", "CVE-2026-0001");
    browser.click_to("tr[data-version='1.0.0'] form.action button");
    assert!(browser.text("p.confirm").contains("web 1.0.0 leaves every rolling channel"));
    browser.click_to("main form button.primary");
    assert!(browser.text("tr[data-version='1.0.0']").contains("deprecated: CVE-2026-0001"));
    browser.screenshot(ctx.temp.path(), "dashboard-component");

    // The pipeline's history, filtered.
    browser.goto(&format!("{}/ui/pipelines/web/history?kind=promote", registry.url));
    assert!(browser.count("table.history tbody tr") >= 1);
    assert!(browser.text("table.history tbody").lines().all(|l| !l.contains(" push ")));

    // Sign out ends the session: pages lead to the sign-in form again.
    browser.click_to("form.signout button");
    assert_eq!(browser.path(), "/ui/sign-in");
    browser.goto(&format!("{}/ui/", registry.url));
    assert_eq!(browser.path(), "/ui/sign-in");
}

#[test]
fn a_viewer_has_no_actions_and_forged_posts_change_nothing() {
    let ctx = TestContext::new();
    let (registry, _agent) = seeded(&ctx);
    let viewer = token(&ctx, &registry, "eyes", "viewer", None);
    let browser = Browser::start();
    browser.sign_in(&registry.url, &viewer);
    assert_eq!(browser.path(), "/ui/");
    assert!(browser.text("article[data-stage=dev]").contains("web 1.1.0"));
    assert_eq!(browser.count("form.action"), 0, "no action for a viewer");
    browser.goto(&format!("{}/ui/configs/web-prod", registry.url));
    assert_eq!(browser.count("form.action"), 0);
    browser.goto(&format!("{}/ui/tokens", registry.url));
    assert!(browser.text("main").contains("needs admin"), "tokens are for admins: {}", browser.text("main"));

    // The viewer's own session and CSRF token, posted by hand (curl): refused, nothing changed.
    browser.goto(&format!("{}/ui/", registry.url));
    let csrf = browser.script("return document.querySelector('form.signout input[name=csrf]').value;");
    let cookie = browser.runtime.block_on(browser.client().get_named_cookie("depot_session")).unwrap();
    let before = revision(&ctx, &registry, "web-prod");
    let post = |path: &str, body: String, extra: &[&str]| -> String {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Cookie: depot_session={}", cookie.value())])
            .args(extra)
            .args(["--data", &body, &format!("{}{path}", registry.url)])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let csrf = csrf.as_str().unwrap().to_owned();
    assert_eq!(post("/ui/configs/web-prod/rollback", format!("csrf={csrf}&confirmed=yes"), &[]), "403");
    assert_eq!(post("/ui/pipelines/web/promote", format!("csrf={csrf}&to=prod&confirmed=yes"), &[]), "403");
    // Every other action too, each with the fields it takes.
    for (path, fields) in [
        ("/ui/pipelines/web/promotions/1/approve", ""),
        ("/ui/pipelines/web/promotions/1/reject", ""),
        ("/ui/configs/web-prod/bump", "&component=web&revision=2"),
        ("/ui/configs/web-prod/rollout", "&action=abort"),
        ("/ui/components/web/versions/1.0.0/deprecation", "&reason=x"),
        ("/ui/components/web/versions/1.0.0/deprecation", "&undo=yes"),
        ("/ui/tokens", "&name=mine&role=admin"),
        ("/ui/tokens/eyes/revoke", ""),
    ] {
        assert_eq!(post(path, format!("csrf={csrf}&confirmed=yes{fields}"), &[]), "403", "{path}");
    }
    let tokens = registry.run(&ctx, &["token", "list", "--json"]).success().stdout;
    assert!(!tokens.contains("\"mine\"") && tokens.contains("\"eyes\""), "{tokens}");
    let versions = registry.run(&ctx, &["versions", "web", "--json"]).success().stdout;
    assert!(!versions.contains("deprecated"), "{versions}");

    // An operator's session: a post without the CSRF token, or from another origin, is refused.
    let ops = token(&ctx, &registry, "ops", "operator", None);
    browser.click_to("form.signout button");
    browser.sign_in(&registry.url, &ops);
    let cookie = browser.runtime.block_on(browser.client().get_named_cookie("depot_session")).unwrap();
    let csrf = browser.script("return document.querySelector('form.signout input[name=csrf]').value;");
    let post = |body: String, extra: &[&str]| -> String {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Cookie: depot_session={}", cookie.value())])
            .args(extra)
            .args(["--data", &body, &format!("{}/ui/configs/web-prod/rollback", registry.url)])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(post("confirmed=yes".into(), &[]), "403", "no CSRF token");
    let csrf = csrf.as_str().unwrap().to_owned();
    assert_eq!(post(format!("csrf={csrf}&confirmed=yes"), &["-H", "Origin: http://evil.example"]), "403");
    assert_eq!(post(format!("csrf={csrf}&confirmed=yes"), &["-H", "Sec-Fetch-Site: cross-site"]), "403");

    // A page on another origin that posts a form to the dashboard in this browser: refused.
    let site = ctx.path("evil");
    fs_err::create_dir_all(&site).unwrap();
    fs_err::write(
        site.join("index.html"),
        format!(
            "<form id=f method=post action='{}/ui/configs/web-prod/rollback'><input name=confirmed value=yes></form>\
             <script>document.getElementById('f').submit()</script>",
            registry.url
        ),
    )
    .unwrap();
    let port = free_port();
    let mut evil = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.wait_text("main", "another site", Duration::from_secs(5));
    let _ = evil.kill();
    let _ = evil.wait();
    assert_eq!(revision(&ctx, &registry, "web-prod"), before, "nothing changed");

    // The session works for a real action (the same rollback, from the dashboard's own page).
    browser.goto(&format!("{}/ui/configs/web-dev", registry.url));
    assert!(browser.count("form.action") > 0, "an operator has actions");

    // An admin manages tokens: a new one is shown once, and can be revoked.
    browser.click_to("form.signout button");
    browser.sign_in(&registry.url, &registry.admin);
    browser.goto(&format!("{}/ui/tokens", registry.url));
    browser.type_into("#name", "ci");
    browser.click_to("form.create button");
    let secret = browser.text("pre.secret");
    assert!(secret.starts_with("ci."), "{secret}");
    registry.run_as(&ctx, &secret, &["configs"]).success();
    browser.click_to("tr[data-token=ci] form.action button");
    browser.click_to("main form button.primary");
    assert_eq!(browser.count("tr[data-token=ci]"), 0);
    registry.run_as(&ctx, &secret, &["configs"]).failure().stderr_contains("unknown or revoked token");
}

#[test]
fn approvals_bumps_rollouts_and_undeprecation_work_from_the_browser_on_a_phone() {
    let ctx = TestContext::new();
    let (registry, agent) = seeded(&ctx);
    registry.run(&ctx, &["pipeline", "gate", "web", "prod", "approval"]).success();
    agent_once(&ctx, &registry, &agent, "web-prod", "prod-1");
    let asker = token(&ctx, &registry, "asker", "operator", None);
    let approver = token(&ctx, &registry, "approver", "operator", None);
    // `tools` rolls out one host at a time, baking an hour: a bump leaves a running rollout.
    registry.run(&ctx, &["config", "rollout", "tools", "--canary", "1", "--batch", "1", "--bake", "1h"]).success();
    agent_once(&ctx, &registry, &agent, "tools", "t-1");
    agent_once(&ctx, &registry, &agent, "tools", "t-2");
    registry.run(&ctx, &["push", "tools", "2", &tree(&ctx, "t2", "t2")]).success();

    let browser = Browser::start();
    // A phone's width: nothing wider than the screen.
    browser.runtime.block_on(browser.client().set_window_size(390, 844)).unwrap();
    // Keyboard only: the token field has the focus, Enter signs in.
    browser.goto(&format!("{}/ui/sign-in", registry.url));
    browser.script("document.body.dataset.before = 'yes';");
    browser
        .runtime
        .block_on(async { browser.client().active_element().await?.send_keys(&format!("{approver}\u{E007}")).await })
        .unwrap();
    browser.wait_loaded();
    assert_eq!(browser.path(), "/ui/");
    let overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth;");
    assert!(overflow.as_i64().unwrap() <= 0, "wider than a phone by {overflow}");

    // A promotion asked by someone else waits; the approver approves it here.
    registry.run_as(&ctx, &asker, &["promote", "web", "--to", "prod"]).success();
    browser.goto(&format!("{}/ui/", registry.url));
    assert!(browser.text("div.pending").contains("asked by asker"));
    browser.click_to("div.promotion form.action[action$='/approve'] button");
    assert!(
        browser.text("p.confirm").contains("1 host of web/prod will switch to web 1.1.0"),
        "{}",
        browser.text("p.confirm")
    );
    browser.click_to("main form button.primary");
    assert!(browser.text("article[data-stage=prod]").contains("web 1.1.0"));
    // Another one, rejected.
    registry.run(&ctx, &["push", "web", "1.2.0", &tree(&ctx, "v3", "v3")]).success();
    registry.run_as(&ctx, &asker, &["promote", "web", "--to", "prod"]).success();
    browser.goto(&format!("{}/ui/", registry.url));
    browser.click_to("div.promotion form.action[action$='/reject'] button");
    browser.click_to("main form button.primary");
    assert!(browser.text("article[data-stage=prod]").contains("web 1.1.0"));
    assert_eq!(browser.count("div.pending"), 0);
    let history = registry.run(&ctx, &["history", "web", "--json"]).success().json();
    let rejected = history.as_array().unwrap().iter().find(|e| e["kind"] == "promotion-rejected").expect("a rejection");
    assert_eq!(rejected["actor"], "approver");

    // Bump tools to 2: a rollout starts; pause, resume and abort it here.
    browser.goto(&format!("{}/ui/configs/tools", registry.url));
    browser.click_to("form.action[action$='/bump'] button");
    assert!(
        browser.text("p.confirm").contains("2 hosts of tools will switch from tools 1 to tools 2"),
        "{}",
        browser.text("p.confirm")
    );
    browser.click_to("main form button.primary");
    let phase = || registry.run(&ctx, &["rollout", "status", "tools", "--json"]).success().json()["phase"].clone();
    assert_eq!(phase(), "running");
    for (button, after) in [("Pause", "paused"), ("Resume", "running"), ("Abort", "aborted")] {
        browser.goto(&format!("{}/ui/configs/tools", registry.url));
        let css = format!("form.action input[name=action][value={}] ~ button", button.to_lowercase());
        browser.click_to(&css);
        assert!(browser.text("h1").starts_with(button), "{}", browser.text("h1"));
        browser.click_to("main form button.primary");
        assert_eq!(phase(), after, "after {button}");
    }

    // Undeprecate a version deprecated from the CLI.
    registry.run(&ctx, &["deprecate", "web", "1.0.0", "--reason", "old"]).success();
    browser.goto(&format!("{}/ui/components/web", registry.url));
    assert!(browser.text("tr[data-version='1.0.0']").contains("deprecated: old"));
    browser.click_to("tr[data-version='1.0.0'] form.action button");
    browser.click_to("main form button.primary");
    assert!(!browser.text("tr[data-version='1.0.0']").contains("deprecated"));
}

#[test]
fn over_tls_the_session_cookie_is_secure_and_forms_work_over_http2() {
    let ctx = TestContext::new();
    let (_, cert, key) = crate::serve::private_ca(&ctx, "tls");
    let data = ctx.path("data");
    let server = crate::serve::start_with(
        &ctx,
        &data,
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let admin = fs_err::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let url = format!("https://{}", server.address);
    // The test CA is not the browser's: it is told to go on.
    let browser = Browser::start_with(&["--ignore-certificate-errors"]);
    browser.sign_in(&url, &admin);
    assert_eq!(browser.path(), "/ui/");
    let protocol = browser.script("return performance.getEntriesByType('navigation')[0].nextHopProtocol;");
    assert_eq!(protocol, "h2", "HTTP/2, where the host is the request's authority");
    let cookie = browser.runtime.block_on(browser.client().get_named_cookie("depot_session")).unwrap();
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    // A form posts (same origin over HTTP/2): a token is created and shown once.
    browser.goto(&format!("{url}/ui/tokens"));
    browser.type_into("#name", "ci");
    browser.click_to("form.create button");
    assert!(browser.text("pre.secret").starts_with("ci."));
    browser.click_to("form.signout button");
    assert_eq!(browser.path(), "/ui/sign-in");
}
