//! The dashboard: three static files compiled into the binary with
//! `include_str!` (no build step, nothing to install beside the daemon),
//! served at `/`, `/app.js` and `/style.css` through the server's
//! [`Pages`](super::server::Pages). The page holds no data of its own: its
//! script asks for the API token once, then polls `/api/v1/...` with it.
//!
//! The page is written for a strict `Content-Security-Policy`
//! (`default-src 'self'`): no inline script or style, no `eval`, no fetch
//! to another origin. The script writes fetched text with `textContent`
//! only, so a torrent or file name cannot become markup.

use crate::runtime::http::Response;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// The dashboard's file at `path` (a GET's path, query removed), or None
/// for any other path.
pub fn page(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return None,
    };
    Some(Response {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(path: &str) -> (String, &'static str) {
        let r = page(path).unwrap_or_else(|| panic!("{path} not served"));
        assert_eq!(r.status, 200, "{path}");
        (String::from_utf8(r.body).unwrap(), r.content_type)
    }

    #[test]
    fn the_three_files_are_served_with_their_types() {
        let (html, t) = body("/");
        assert_eq!(t, "text/html; charset=utf-8");
        assert!(html.starts_with("<!DOCTYPE html>"));
        let (js, t) = body("/app.js");
        assert_eq!(t, "text/javascript; charset=utf-8");
        assert!(js.contains("\"use strict\""));
        let (css, t) = body("/style.css");
        assert_eq!(t, "text/css; charset=utf-8");
        assert!(css.contains(".progress-value"));
        assert_eq!(body("/index.html").0, html);
    }

    #[test]
    fn other_paths_are_not_served() {
        for p in [
            "",
            "/app.js/",
            "/APP.JS",
            "/style.css.map",
            "/metrics",
            "/dashboard/app.js",
            "/../app.js",
            "/favicon.ico",
            "//app.js",
        ] {
            assert!(page(p).is_none(), "{p:?}");
        }
    }

    /// Every `<script ...>` tag in `html`, opening tag and contents.
    fn scripts(html: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let lower = html.to_ascii_lowercase();
        let mut at = 0;
        while let Some(i) = lower[at..].find("<script") {
            let start = at + i;
            let open_end = start + lower[start..].find('>').expect("unclosed <script");
            let close = open_end + lower[open_end..].find("</script>").expect("no </script>");
            out.push((
                html[start..=open_end].to_string(),
                html[open_end + 1..close].to_string(),
            ));
            at = close;
        }
        out
    }

    #[test]
    fn index_loads_app_js_and_has_no_inline_script_or_style() {
        let html = INDEX_HTML;
        let s = scripts(html);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0].0.contains("src=\"/app.js\""), "{s:?}");
        assert!(s[0].1.trim().is_empty(), "inline script: {s:?}");
        assert!(html.contains("href=\"/style.css\""));
        let lower = html.to_ascii_lowercase();
        // Inline handlers and styles would each need 'unsafe-inline'.
        for bad in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " style=",
            "<style",
            "javascript:",
        ] {
            assert!(!lower.contains(bad), "{bad}");
        }
        assert!(!lower
            .split_whitespace()
            .any(|w| w.starts_with("on") && w.contains('=')));
        // The ids the script and the browser test rely on.
        for id in [
            "torrents",
            "session",
            "token-form",
            "token-input",
            "detail",
            "piece-map",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
            assert!(
                APP_JS.contains(&format!("$(\"{id}\")")),
                "app.js never uses #{id}"
            );
        }
    }

    #[test]
    fn app_js_writes_no_markup_and_fetches_only_its_origin() {
        let js = APP_JS;
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
            "http://",
            "https://",
            "XMLHttpRequest",
            "WebSocket",
            "import(",
        ] {
            assert!(!js.contains(bad), "app.js uses {bad}");
        }
        // One fetch, of a path the script builds from "/api/v1/...".
        assert_eq!(js.matches("fetch(").count(), 1);
        assert!(js.contains("fetch(path,"));
        for call in js.match_indices("api(\"").map(|(i, _)| &js[i + 4..]) {
            assert!(
                call.starts_with("\"/api/v1/"),
                "{}",
                call.chars().take(40).collect::<String>()
            );
        }
        assert!(js.contains("api(\"/api/v1/torrents\")"));
        assert!(js.contains("api(\"/api/v1/session\")"));
        assert!(js.contains("\"Bearer \""));
        assert!(js.contains("textContent"));
        // The documented hooks are the ones the script builds.
        for hook in [
            "dataset.hash",
            "\"progress-value\"",
            "\"name\"",
            "localStorage",
            "replaceState",
        ] {
            assert!(js.contains(hook), "{hook}");
        }
    }

    #[test]
    fn the_style_sheet_loads_nothing() {
        assert!(!STYLE_CSS.contains("@import"));
        assert!(!STYLE_CSS.contains("url("));
    }
}
