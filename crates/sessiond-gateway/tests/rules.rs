//! The access decision: a table of requests against a typical rule list, and
//! a property: a rule list never allows what a stricter list denies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use proptest::prelude::*;
use sessiond_gateway::rules::{
    AccessRule, AccessRules, Allow, CsrfCheck, HostPattern, PathPattern, RuleCache,
};
use sessiond_gateway::{Decision, NormalPath, Target};

fn rules_from_toml_like_json(json: serde_json::Value) -> Vec<AccessRule> {
    serde_json::from_value(json).unwrap()
}

fn design() -> AccessRules {
    let rules = rules_from_toml_like_json(serde_json::json!([
        {"path": "/api/public", "allow": "public"},
        {"path": "/api/admin/**", "allow": ["admin"]},
        {"path": "/api/profile", "allow": "authenticated"},
        {"path": "/reports/*.pdf", "methods": ["GET"], "allow": ["auditor", "admin"]},
        {"path": "/", "host": "status.example.com", "allow": "public"},
        {"path": "/static/**", "allow": "public", "csrf": "off"},
    ]));
    AccessRules::new(rules, None)
}

fn decide(
    rules: &AccessRules,
    method: Method,
    host: &str,
    path: &str,
    roles: Option<&[&str]>,
) -> &'static str {
    let path = NormalPath::parse(path).unwrap();
    let roles: Option<Vec<String>> = roles.map(|r| r.iter().map(|s| (*s).to_owned()).collect());
    let target = Target {
        method: &method,
        host: Some(host),
        path: &path,
    };
    match rules.decide(&target, roles.as_deref()) {
        Decision::Allow(_) => "allow",
        Decision::NeedSession(_) => "401",
        Decision::Deny(_) => "403",
    }
}

#[test]
fn the_design_tiers_decide_as_documented() {
    let r = design();
    let (get, post, head) = (Method::GET, Method::POST, Method::HEAD);
    let user: Option<&[&str]> = Some(&["user"]);
    let admin: Option<&[&str]> = Some(&["admin"]);
    for (method, host, path, roles, expected) in [
        (&get, "app", "/api/public", None, "allow"),
        (&get, "app", "/api/public/items/1", None, "allow"),
        (&get, "app", "/api/publicity", None, "403"),
        (&get, "app", "/api/profile", None, "401"),
        (&get, "app", "/api/profile", user, "allow"),
        (&get, "app", "/api/admin/users", None, "401"),
        (&get, "app", "/api/admin/users", user, "403"),
        (&get, "app", "/api/admin/users", admin, "allow"),
        (&get, "app", "/api/admin", admin, "allow"),
        // Every spelling of the admin path meets the admin rule.
        (&get, "app", "/api/public/../admin/users", user, "403"),
        (&get, "app", "/api/%61dmin/users", user, "403"),
        (&get, "app", "//api//admin/users", user, "403"),
        (&get, "app", "/api/admin;x=1/users", user, "403"),
        (&get, "app", "/reports/q3.pdf", Some(&["auditor"]), "allow"),
        (&head, "app", "/reports/q3.pdf", Some(&["auditor"]), "allow"),
        (&post, "app", "/reports/q3.pdf", Some(&["auditor"]), "403"),
        (&get, "app", "/reports/q3.html", Some(&["auditor"]), "403"),
        (
            &get,
            "app",
            "/reports/2024/q3.pdf",
            Some(&["auditor"]),
            "403",
        ),
        (&get, "status.example.com", "/anything", None, "allow"),
        (&get, "STATUS.example.com:443", "/", None, "allow"),
        (&get, "app", "/static/app.js", None, "allow"),
        (&get, "app", "/unlisted", admin, "403"),
    ] {
        assert_eq!(
            decide(&r, method.clone(), host, path, roles),
            expected,
            "{method} {host}{path} as {roles:?}"
        );
    }
}

#[test]
fn a_default_rule_decides_what_no_rule_matches() {
    let rules =
        rules_from_toml_like_json(serde_json::json!([{"path": "/open", "allow": "public"}]));
    let r = AccessRules::new(rules, Some(Allow::Authenticated));
    assert_eq!(decide(&r, Method::GET, "h", "/other", None), "401");
    assert_eq!(
        decide(&r, Method::GET, "h", "/other", Some(&["x"])),
        "allow"
    );
    assert_eq!(decide(&r, Method::GET, "h", "/open", None), "allow");
}

#[test]
fn invalid_rules_are_refused_with_a_message_naming_them() {
    for (rule, says) in [
        (
            serde_json::json!({"path": "api", "allow": "public"}),
            "\"api\"",
        ),
        (
            serde_json::json!({"path": "/a/../b", "allow": "public"}),
            "\"/a/../b\"",
        ),
        (
            serde_json::json!({"path": "/a**", "allow": "public"}),
            "whole segment",
        ),
        (
            serde_json::json!({"path": "/a%2f", "allow": "public"}),
            "\"/a%2f\"",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "everyone"}),
            "allow must be",
        ),
        (
            serde_json::json!({"path": "/a", "allow": []}),
            "allow must be",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "public", "methods": ["GE T"]}),
            "GE T",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "public", "host": "a/b"}),
            "a/b",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "public", "colour": "red"}),
            "colour",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "authenticated", "cache": true}),
            "only rules with allow = \"public\" can be cached",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "public", "cache_ttl": "soon"}),
            "cache_ttl",
        ),
        (
            serde_json::json!({"path": "/a", "allow": "public", "invalidate": ["a"]}),
            "is not a path",
        ),
    ] {
        let e = serde_json::from_value::<AccessRule>(rule.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{rule}: {e}");
    }
}

#[test]
fn only_rules_that_let_anyone_in_are_cached_and_their_settings_read_back() {
    let rules = rules_from_toml_like_json(serde_json::json!([
        {"path": "/docs", "allow": "public", "cache_ttl": "30s", "invalidate": ["/docs"]},
        {"path": "/feed", "allow": "public", "cache": false},
        {"path": "/api/**", "allow": "authenticated"},
    ]));
    assert!(rules[0].cache.enabled);
    assert_eq!(rules[0].cache.ttl, Some(std::time::Duration::from_secs(30)));
    assert_eq!(&*rules[0].cache.invalidate, ["/docs"]);
    assert!(!rules[1].cache.enabled);
    assert!(!rules[2].cache.enabled);
    let again: Vec<AccessRule> =
        serde_json::from_value(serde_json::to_value(&rules).unwrap()).unwrap();
    assert_eq!(again, rules);
}

fn allow_strategy() -> impl Strategy<Value = Allow> {
    prop_oneof![
        Just(Allow::Public),
        Just(Allow::Authenticated),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..3)
            .prop_map(|r| Allow::Roles(r.into_iter().map(String::from).collect())),
    ]
}

/// A stricter `allow`: Public → Authenticated → some roles → fewer roles.
fn stricter(allow: &Allow, pick: usize) -> Allow {
    match (allow, pick % 3) {
        (Allow::Public, 0) => Allow::Public,
        (Allow::Public, 1) => Allow::Authenticated,
        (Allow::Public | Allow::Authenticated, _) => Allow::Roles(vec!["a".into()]),
        (Allow::Roles(r), 0) => Allow::Roles(r.clone()),
        (Allow::Roles(r), _) => Allow::Roles(r[..1].to_vec()),
    }
}

fn rule_strategy() -> impl Strategy<Value = AccessRule> {
    let paths = prop::sample::select(vec!["/", "/x", "/x/y", "/x/**", "/*/y", "/z"]);
    let hosts = prop::option::of(prop::sample::select(vec!["h1", ".h2"]));
    let methods = prop::option::of(prop::sample::select(vec![
        vec![Method::GET],
        vec![Method::POST],
    ]));
    (paths, hosts, methods, allow_strategy()).prop_map(|(p, h, m, allow)| AccessRule {
        path: PathPattern::parse(p).unwrap(),
        host: h.map(|h| HostPattern::parse(h).unwrap()),
        methods: m,
        allow,
        csrf: CsrfCheck::Origin,
        upstream: None,
        rate: None,
        cache: RuleCache::default(),
        reauth: false,
    })
}

proptest! {
    #[test]
    fn a_rule_list_never_allows_what_a_stricter_list_denies(
        rules in prop::collection::vec(rule_strategy(), 0..6),
        picks in prop::collection::vec(0usize..3, 6),
        default in prop::option::of(allow_strategy()),
        default_pick in 0usize..3,
        path in prop::sample::select(vec!["/", "/x", "/x/y", "/q/y", "/z/w", "/x/y/z"]),
        host in prop::sample::select(vec!["h1", "a.h2", "other"]),
        post in any::<bool>(),
        roles in prop::option::of(prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 0..3)),
    ) {
        let strict_rules: Vec<AccessRule> = rules
            .iter()
            .zip(&picks)
            .map(|(r, pick)| AccessRule { allow: stricter(&r.allow, *pick), ..r.clone() })
            .collect();
        let strict_default = default.as_ref().map(|d| stricter(d, default_pick));
        let lenient = AccessRules::new(rules, default);
        let strict = AccessRules::new(strict_rules, strict_default);
        let path = NormalPath::parse(path).unwrap();
        let method = if post { Method::POST } else { Method::GET };
        let target = Target { method: &method, host: Some(host), path: &path };
        let roles: Option<Vec<String>> = roles.map(|r| r.into_iter().map(String::from).collect());
        if strict.decide(&target, roles.as_deref()).allowed() {
            prop_assert!(lenient.decide(&target, roles.as_deref()).allowed());
        }
    }
}
