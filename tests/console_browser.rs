//! The web console in a real browser: headless Chromium driven through chromedriver (see
//! `common::browser`), against the real application on SQLite (and PostgreSQL where it is
//! cheap). Each test has its own app and its own browser, so they run in parallel.
//!
//! The run also saves screenshots of the review queue and of a case page to
//! `target/console-screenshots/`; `OFFSIDE_SCREENSHOTS_DIR=docs/screenshots cargo test --test
//! console_browser` refreshes the README's copies.

mod common;

use common::browser::Browser;
use common::spawn_app;

#[tokio::test]
async fn the_browser_reads_what_the_app_serves() {
    let app = spawn_app().await;
    let browser = Browser::launch(&app).await;
    browser.open("/openapi.json").await;
    let text = browser.body_text().await;
    assert!(text.contains("\"openapi\""), "{text}");
    assert_eq!(browser.fetch_status("GET", "/healthz", None).await, 200);
    assert_eq!(browser.fetch_status("GET", "/v1/references", None).await, 401);
}
