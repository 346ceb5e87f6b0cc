//! HTML the pages are made of: escaping, the page frame (navigation, who is signed in,
//! sign-out, the flash message), and how times, ages and money read. Every value that
//! comes from data goes through [`esc`]; markup is written only here and in `pages/`.

use std::fmt::Write as _;

use crate::session::Flash;

/// `s` with `& < > " '` escaped, safe in text and in quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` escaped for a URL path segment or query value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Microseconds since the epoch as `2026-12-01 14:03 UTC` (empty for 0).
pub fn time(at_us: i64) -> String {
    if at_us <= 0 {
        return String::new();
    }
    let c = waybill_domain::Timestamp(at_us).civil();
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", c.year, c.month, c.day, c.hour, c.minute)
}

/// A duration in words: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match s % 3600 / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match s % 86_400 / 3600 {
            0 => format!("{} d", s / 86_400),
            h => format!("{} d {h} h", s / 86_400),
        },
    }
}

/// Minor units as `12,500.00`.
pub fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let major = (m / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in major.chars().enumerate() {
        if i > 0 && (major.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", m % 100)
}

/// Who is looking at a page, for its frame.
#[derive(Debug, Clone)]
pub struct Viewer<'a> {
    /// Identity.
    pub identity: &'a str,
    /// Role name.
    pub role: &'a str,
    /// The session's CSRF token (for the sign-out form).
    pub csrf: &'a str,
}

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Approval inbox and postings.
    Inbox,
    /// Exception queue.
    Exceptions,
    /// Orders, search, lineage.
    Orders,
    /// Orders stuck in a state.
    Stuck,
    /// The business dashboard.
    Dashboard,
    /// The audit.
    Audit,
    /// Sign-in (no navigation).
    None,
}

const NAV: [(Section, &str, &str, &str); 6] = [
    (Section::Inbox, "/inbox", "Approvals", "g a"),
    (Section::Exceptions, "/exceptions", "Exceptions", "g e"),
    (Section::Orders, "/orders", "Orders", "g o"),
    (Section::Stuck, "/stuck", "Stuck", "g s"),
    (Section::Dashboard, "/dashboard", "Dashboard", "g d"),
    (Section::Audit, "/audit", "Audit", "g u"),
];

/// A hidden CSRF field.
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A whole page: `body` (already HTML) inside the frame.
pub fn page(title: &str, section: Section, viewer: Option<&Viewer<'_>>, flash: Option<&Flash>, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · Waybill</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body data-section="{:?}">
<a class="skip" href="#main">Skip to the content</a>
<header>
<span class="brand">Waybill</span>
"##,
        esc(title),
        section
    );
    if let Some(v) = viewer {
        h.push_str(r#"<nav aria-label="Main"><ul>"#);
        for (s, href, label, keys) in NAV {
            let current = if s == section { r#" aria-current="page""# } else { "" };
            let _ = write!(h, r#"<li><a href="{href}"{current} title="{label} ({keys})">{label}</a></li>"#);
        }
        h.push_str("</ul></nav>");
        h.push_str(
            r#"<form class="search" role="search" action="/orders" method="get"><label for="q" class="visually-hidden">Find an order by any reference</label><input id="q" name="q" type="search" placeholder="Order, shipment, invoice, tracking… ( / )"></form>"#,
        );
        let _ = write!(
            h,
            r#"<span id="whoami">{} ({})</span><form id="signout" method="post" action="/signout">{}<button id="signout-submit" type="submit">Sign out</button></form>"#,
            esc(v.identity),
            esc(v.role),
            csrf_field(v.csrf)
        );
    }
    h.push_str("</header>\n<main id=\"main\" tabindex=\"-1\">\n");
    if let Some(f) = flash {
        let (class, role) = if f.ok { ("ok", "status") } else { ("error", "alert") };
        let _ = write!(h, r#"<div id="flash" class="{class}" role="{role}">{}</div>"#, esc(&f.text));
    }
    h.push_str(body);
    h.push_str("\n</main>\n</body>\n</html>\n");
    h
}

/// A `<select>` of `options` (value, label) with `selected` chosen.
pub fn select(name: &str, label: &str, options: &[(&str, &str)], selected: &str) -> String {
    let mut h = format!(r#"<label>{} <select name="{}">"#, esc(label), esc(name));
    for (v, l) in options {
        let sel = if *v == selected { " selected" } else { "" };
        let _ = write!(h, r#"<option value="{}"{sel}>{}</option>"#, esc(v), esc(l));
    }
    h.push_str("</select></label>");
    h
}

/// The lists' Entity filter: a choice among the configured entities, none without them
/// (a value in the address that names none is still sent, and refused saying which exist).
pub fn entity_filter(entities: &[String], selected: &str) -> String {
    if entities.is_empty() && selected.is_empty() {
        return String::new();
    }
    let mut options: Vec<(&str, &str)> = vec![("", "All")];
    options.extend(entities.iter().map(|e| (e.as_str(), e.as_str())));
    if !selected.is_empty() && !entities.iter().any(|e| e == selected) {
        options.push((selected, selected));
    }
    select("entity", "Entity", &options, selected)
}

/// A text `<input>` with its label.
pub fn input(name: &str, label: &str, value: &str, kind: &str) -> String {
    format!(r#"<label>{} <input name="{}" type="{}" value="{}"></label>"#, esc(label), esc(name), esc(kind), esc(value))
}

/// "Next page" link keeping `query` (already URL-encoded pairs) and the token.
pub fn pager(path: &str, query: &[(&str, String)], next_token: &str) -> String {
    if next_token.is_empty() {
        return String::new();
    }
    let mut q: Vec<String> =
        query.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", url(v))).collect();
    q.push(format!("page_token={}", url(next_token)));
    format!(
        r#"<nav class="pager" aria-label="Pages"><a rel="next" href="{path}?{}">Next page →</a></nav>"#,
        esc(&q.join("&"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entity_filter_offers_the_configured_entities_and_only_then() {
        assert_eq!(entity_filter(&[], ""), "", "one company: no filter");
        let two = ["acme-fr".to_string(), "acme-us".to_string()];
        let h = entity_filter(&two, "acme-us");
        assert!(h.contains(r#"<select name="entity">"#) && h.contains(r#"<option value="">All</option>"#), "{h}");
        assert!(h.contains(r#"<option value="acme-us" selected>acme-us</option>"#), "{h}");
        // An entity in the address that is not configured stays selected, so the refusal
        // that names the configured ones is shown with the filter that caused it.
        assert!(entity_filter(&two, "acme-xx").contains(r#"<option value="acme-xx" selected>"#));
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(url("inv:SHP 1/2"), "inv%3ASHP%201%2F2");
    }

    #[test]
    fn times_ages_and_money_read_naturally() {
        assert_eq!(time(0), "");
        assert_eq!(time(1_764_597_780_000_000), "2025-12-01 14:03 UTC");
        assert_eq!(time(951_782_400_000_000), "2000-02-29 00:00 UTC");
        assert_eq!(age(42), "42 s");
        assert_eq!(age(12 * 60 + 5), "12 min");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2 d 4 h");
        assert_eq!(money(1_250_000), "12,500.00");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(100_000_000), "1,000,000.00");
    }

    #[test]
    fn the_frame_shows_who_and_escapes_the_flash() {
        let v = Viewer { identity: "ada", role: "approver", csrf: "t0k" };
        let f = Flash { ok: false, text: "<script>".into() };
        let h = page("Inbox", Section::Inbox, Some(&v), Some(&f), "<p>x</p>");
        assert!(h.contains(r#"<span id="whoami">ada (approver)</span>"#));
        assert!(h.contains(r#"name="csrf" value="t0k""#));
        assert!(h.contains(r#"href="/inbox" aria-current="page""#));
        assert!(h.contains("&lt;script&gt;") && !h.contains("<script>"));
        let anon = page("Sign in", Section::None, None, None, "");
        assert!(!anon.contains("whoami") && !anon.contains("<nav"));
    }
}
