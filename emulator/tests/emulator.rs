//! End-to-end tests of the emulator over real HTTP (reqwest).
#![expect(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use graph_emulator::{
    Config, Emulator, Endpoint, Fault, FaultRule, Group, MemberKind, Mode, ModeKind, Mutation,
    Truth, User,
};
use reqwest::{Client, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn start(config: Config) -> Emulator {
    Emulator::start(config).await.unwrap()
}

async fn token_response(c: &Client, emu: &Emulator, form: &[(&str, &str)]) -> reqwest::Response {
    c.post(emu.token_url()).form(form).send().await.unwrap()
}

async fn token(c: &Client, emu: &Emulator) -> String {
    let cfg = emu.config();
    let r = token_response(
        c,
        emu,
        &[
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn get(c: &Client, url: &str, tok: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    get_h(c, url, tok, &[]).await
}

async fn get_h(
    c: &Client,
    url: &str,
    tok: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut rb = c.get(url).bearer_auth(tok);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, h, v)
}

/// Follow nextLinks; returns (pages sizes, all items).
async fn get_all(c: &Client, url: &str, tok: &str) -> (Vec<usize>, Vec<Value>) {
    let mut url = url.to_string();
    let mut sizes = Vec::new();
    let mut items = Vec::new();
    loop {
        let (s, _, v) = get(c, &url, tok).await;
        assert_eq!(s, 200, "{url}: {v}");
        let page = v["value"].as_array().unwrap();
        sizes.push(page.len());
        items.extend(page.iter().cloned());
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => return (sizes, items),
        }
        assert!(sizes.len() < 10_000, "runaway paging");
    }
}

/// One delta round: (entries, deltaLink, pages).
async fn delta_round(
    c: &Client,
    url: &str,
    tok: &str,
    minimal: bool,
) -> (Vec<Value>, String, usize) {
    let mut url = url.to_string();
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        let headers: &[(&str, &str)] = if minimal {
            &[("Prefer", "return=minimal")]
        } else {
            &[]
        };
        let (s, _, v) = get_h(c, &url, tok, headers).await;
        assert_eq!(s, 200, "{url}: {v}");
        pages += 1;
        entries.extend(v["value"].as_array().unwrap().iter().cloned());
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(v.get("@odata.deltaLink").is_none());
            url = n.to_string();
        } else {
            let d = v["@odata.deltaLink"].as_str().unwrap().to_string();
            return (entries, d, pages);
        }
        assert!(pages < 10_000);
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

const USER_SELECT: &str = "id,displayName,userPrincipalName,mail,givenName,surname,jobTitle,department,companyName,employeeId,accountEnabled,mobilePhone,onPremisesExtensionAttributes";

fn user_select(emu: &Emulator) -> String {
    format!(
        "{USER_SELECT},extension_{}_costCenter",
        emu.config().extension_app_id
    )
}

/// A local replica built by applying delta entries (merge per id, idempotent).
#[derive(Default, Debug)]
struct Replica {
    users: BTreeMap<String, Map<String, Value>>,
    soft: BTreeSet<String>,
    hard: BTreeSet<String>,
    groups: BTreeMap<String, Map<String, Value>>,
    members: BTreeMap<String, BTreeSet<(String, String)>>,
    deleted_groups: BTreeSet<String>,
}

impl Replica {
    fn apply_users(&mut self, entries: &[Value]) {
        for e in entries {
            let id = e["id"].as_str().unwrap().to_string();
            if let Some(r) = e.get("@removed") {
                self.users.remove(&id);
                match r["reason"].as_str().unwrap() {
                    "changed" => {
                        self.soft.insert(id);
                    }
                    "deleted" => {
                        self.soft.remove(&id);
                        self.hard.insert(id);
                    }
                    other => panic!("reason {other}"),
                }
                continue;
            }
            self.soft.remove(&id);
            let slot = self.users.entry(id).or_default();
            for (k, v) in e.as_object().unwrap() {
                slot.insert(k.clone(), v.clone());
            }
        }
    }

    fn apply_groups(&mut self, entries: &[Value]) {
        for e in entries {
            let id = e["id"].as_str().unwrap().to_string();
            if e.get("@removed").is_some() {
                self.groups.remove(&id);
                self.members.remove(&id);
                self.deleted_groups.insert(id);
                continue;
            }
            let slot = self.groups.entry(id.clone()).or_default();
            for (k, v) in e.as_object().unwrap() {
                if k != "members@delta" {
                    slot.insert(k.clone(), v.clone());
                }
            }
            let set = self.members.entry(id).or_default();
            if let Some(ms) = e.get("members@delta") {
                for m in ms.as_array().unwrap() {
                    let kind = m["@odata.type"].as_str().unwrap().to_string();
                    let mid = m["id"].as_str().unwrap().to_string();
                    if m.get("@removed").is_some() {
                        set.retain(|(_, x)| *x != mid);
                    } else {
                        set.insert((kind, mid));
                    }
                }
            }
        }
    }

    fn assert_users_match(&self, truth: &Truth, ext: &str) {
        let t_ids: BTreeSet<String> = truth.users.iter().map(|u| u.id.clone()).collect();
        let r_ids: BTreeSet<String> = self.users.keys().cloned().collect();
        assert!(
            t_ids == r_ids,
            "user ids differ: missing {:?}, extra {:?}",
            t_ids.difference(&r_ids).collect::<Vec<_>>(),
            r_ids.difference(&t_ids).collect::<Vec<_>>()
        );
        let s =
            |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        for u in &truth.users {
            let r = &self.users[&u.id];
            assert_eq!(
                s(r, "displayName").as_deref(),
                Some(u.display_name.as_str())
            );
            assert_eq!(
                s(r, "userPrincipalName").as_deref(),
                Some(u.user_principal_name.as_str())
            );
            assert_eq!(s(r, "mail"), u.mail, "mail of {}", u.id);
            assert_eq!(s(r, "givenName"), u.given_name);
            assert_eq!(s(r, "surname"), u.surname);
            assert_eq!(s(r, "jobTitle"), u.job_title, "jobTitle of {}", u.id);
            assert_eq!(s(r, "department"), u.department);
            assert_eq!(s(r, "companyName"), u.company_name);
            assert_eq!(s(r, "employeeId"), u.employee_id);
            assert_eq!(s(r, "mobilePhone"), u.mobile_phone);
            assert_eq!(r["accountEnabled"].as_bool(), Some(u.account_enabled));
            let attrs = r["onPremisesExtensionAttributes"].as_object().unwrap();
            assert_eq!(attrs.len(), 15);
            for (i, a) in u.on_premises_extension_attributes.iter().enumerate() {
                assert_eq!(
                    attrs[&format!("extensionAttribute{}", i + 1)].as_str(),
                    a.as_deref()
                );
            }
            let key = format!("extension_{ext}_costCenter");
            assert_eq!(
                r.get(&key).filter(|v| !v.is_null()),
                u.extensions.get(&key),
                "costCenter of {}",
                u.id
            );
        }
        let soft: BTreeSet<String> = truth.soft_deleted_users.iter().cloned().collect();
        assert!(soft.is_subset(&self.soft) || soft == self.soft);
    }

    fn assert_groups_match(&self, truth: &Truth) {
        let t_ids: BTreeSet<String> = truth.groups.iter().map(|g| g.id.clone()).collect();
        let r_ids: BTreeSet<String> = self.groups.keys().cloned().collect();
        assert!(
            t_ids == r_ids,
            "group ids differ: missing {:?}, extra {:?}",
            t_ids.difference(&r_ids).collect::<Vec<_>>(),
            r_ids.difference(&t_ids).collect::<Vec<_>>()
        );
        for g in &truth.groups {
            let r = &self.groups[&g.id];
            assert_eq!(r["displayName"].as_str(), Some(g.display_name.as_str()));
            assert_eq!(
                r.get("description").and_then(Value::as_str),
                g.description.as_deref()
            );
            assert_eq!(r["securityEnabled"].as_bool(), Some(g.security_enabled));
            assert_eq!(r["groupTypes"], json!(g.group_types));
        }
        let mut expected: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for (g, kind, m) in &truth.memberships {
            let t = match kind {
                MemberKind::User => "#microsoft.graph.user",
                MemberKind::Group => "#microsoft.graph.group",
            };
            expected
                .entry(g.clone())
                .or_default()
                .insert((t.to_string(), m.clone()));
        }
        for g in &truth.groups {
            let want = expected.remove(&g.id).unwrap_or_default();
            let got = self.members.get(&g.id).cloned().unwrap_or_default();
            let missing: Vec<_> = want.difference(&got).collect();
            let extra: Vec<_> = got.difference(&want).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "members of {}: missing {missing:?}, extra {extra:?}",
                g.id
            );
        }
    }
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

// ------------------------------------------------------------------------------------------
// Token endpoint
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_success_form_and_basic() {
    let emu = start(Config::default()).await;
    let c = client();
    let cfg = emu.config().clone();
    let r = token_response(
        &c,
        &emu,
        &[
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["ext_expires_in"], 3600);
    let tok = v["access_token"].as_str().unwrap();
    assert_eq!(tok.split('.').count(), 3);
    let cl = claims(tok);
    assert_eq!(
        cl["iss"],
        format!("https://sts.windows.net/{}/", cfg.tenant_id)
    );
    assert_eq!(cl["tid"], cfg.tenant_id.as_str());
    assert_eq!(cl["appid"], cfg.client_id.as_str());
    assert_eq!(cl["aud"], "https://graph.microsoft.com");
    assert_eq!(
        cl["roles"],
        json!(["User.Read.All", "GroupMember.Read.All"])
    );
    assert!(cl["exp"].as_u64().unwrap() > cl["iat"].as_u64().unwrap());

    // HTTP Basic, tenant as domain, scope {base}/.default
    let url = format!("{}/{}/oauth2/v2.0/token", emu.base_url(), cfg.tenant_domain);
    let scope = format!("{}/.default", emu.base_url());
    let r = c
        .post(url)
        .basic_auth(&cfg.client_id, Some(&cfg.client_secret))
        .form(&[
            ("scope", scope.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let tok2 = v["access_token"].as_str().unwrap().to_string();
    let (s, h, body) = get(&c, &format!("{}/v1.0/users?$top=1", emu.base_url()), &tok2).await;
    assert_eq!(s, 200, "{body}");
    assert!(h.contains_key("request-id"));
    assert!(h.contains_key("x-ms-ags-diagnostic"));
    assert!(h.contains_key("x-ms-resource-unit"));
    assert_eq!(h["client-request-id"], h["request-id"]);
}

async fn assert_aad_error(r: reqwest::Response, status: u16, error: &str, code: u64) {
    assert_eq!(r.status().as_u16(), status);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["error_codes"], json!([code]));
    let desc = v["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(v[k].is_string(), "{k} missing in {v}");
    }
    assert!(
        v["error_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("code={code}"))
    );
}

#[tokio::test]
async fn token_errors() {
    let emu = start(Config::default()).await;
    let c = client();
    let cfg = emu.config().clone();
    let graph = "https://graph.microsoft.com/.default";
    let form = |id: &str, secret: &str, scope: &str| {
        vec![
            ("client_id".to_string(), id.to_string()),
            ("client_secret".to_string(), secret.to_string()),
            ("scope".to_string(), scope.to_string()),
            ("grant_type".to_string(), "client_credentials".to_string()),
        ]
    };
    let post = |url: String, f: Vec<(String, String)>| {
        let c = c.clone();
        async move { c.post(url).form(&f).send().await.unwrap() }
    };
    let tu = emu.token_url();
    assert_aad_error(
        post(tu.clone(), form(&cfg.client_id, "wrong", graph)).await,
        401,
        "invalid_client",
        7_000_215,
    )
    .await;
    assert_aad_error(
        post(
            tu.clone(),
            form(
                "11111111-2222-3333-4444-555555555555",
                &cfg.client_secret,
                graph,
            ),
        )
        .await,
        400,
        "unauthorized_client",
        700_016,
    )
    .await;
    assert_aad_error(
        post(
            format!(
                "{}/99999999-2222-3333-4444-555555555555/oauth2/v2.0/token",
                emu.base_url()
            ),
            form(&cfg.client_id, &cfg.client_secret, graph),
        )
        .await,
        400,
        "invalid_request",
        90_002,
    )
    .await;
    assert_aad_error(
        post(
            tu.clone(),
            form(
                &cfg.client_id,
                &cfg.client_secret,
                "https://graph.microsoft.com/User.Read.All",
            ),
        )
        .await,
        400,
        "invalid_scope",
        1_002_012,
    )
    .await;
    assert_aad_error(
        post(
            tu.clone(),
            form(
                &cfg.client_id,
                &cfg.client_secret,
                "https://evil.example/.default",
            ),
        )
        .await,
        400,
        "invalid_scope",
        70_011,
    )
    .await;
}

// ------------------------------------------------------------------------------------------
// Graph auth
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn graph_auth_roles_and_expiry() {
    let emu = start(Config::default()).await;
    let c = client();
    let users = format!("{}/v1.0/users", emu.base_url());

    let r = c.get(&users).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    let inner = &v["error"]["innerError"];
    let date = inner["date"].as_str().unwrap();
    assert_eq!(date.len(), 19);
    assert_eq!(&date[10..11], "T");
    assert!(inner["request-id"].is_string() && inner["client-request-id"].is_string());

    let (s, _, _) = get(&c, &users, "not-a-token").await;
    assert_eq!(s, 401);
    let (s, _, _) = get(&c, &users, "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ4In0.").await;
    assert_eq!(s, 401, "tokens the emulator did not issue are rejected");

    emu.set_mode(Mode::NoRoles);
    let tok = token(&c, &emu).await;
    assert!(claims(&tok).get("roles").is_none());
    let (s, _, v) = get(&c, &users, &tok).await;
    assert_eq!(s, 403);
    assert_eq!(v["error"]["code"], "Authorization_RequestDenied");
    emu.set_mode(Mode::Off(ModeKind::NoRoles));

    emu.set_mode(Mode::TokenExpiresIn(30));
    let c2 = client();
    let r = token_response(
        &c2,
        &emu,
        &[
            ("client_id", emu.config().client_id.as_str()),
            ("client_secret", emu.config().client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 30);
    let tok = v["access_token"].as_str().unwrap().to_string();
    let (s, _, _) = get(&c, &users, &tok).await;
    assert_eq!(s, 200);
    emu.advance_clock(31);
    let (s, _, v) = get(&c, &users, &tok).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(
        v["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    emu.set_mode(Mode::Normal);
    let tok = token(&c, &emu).await;
    assert_eq!(
        claims(&tok)["exp"].as_u64().unwrap() - claims(&tok)["iat"].as_u64().unwrap(),
        3600
    );
}

// ------------------------------------------------------------------------------------------
// Lists
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn users_paging_top_default_and_cap() {
    let emu = start(Config {
        users: 1050,
        groups: 3,
        memberships: 100,
        ..Config::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();

    let (sizes, items) = get_all(&c, &format!("{base}/v1.0/users?$top=999"), &tok).await;
    assert_eq!(sizes, vec![999, 51]);
    let got: BTreeSet<String> = ids(&items).into_iter().collect();
    let truth: BTreeSet<String> = emu.truth().users.into_iter().map(|u| u.id).collect();
    assert_eq!(got, truth);
    assert_eq!(items.len(), 1050);

    let (sizes, items) = get_all(&c, &format!("{base}/v1.0/users"), &tok).await;
    assert_eq!(sizes.len(), 11);
    assert!(sizes[..10].iter().all(|s| *s == 100));
    assert_eq!(items.len(), 1050);

    let (s, _, v) = get(&c, &format!("{base}/v1.0/users?$top=1000"), &tok).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid page size")
    );
    let (s, _, _) = get(&c, &format!("{base}/v1.0/users?$top=0"), &tok).await;
    assert_eq!(s, 400);
    let (s, _, _) = get(&c, &format!("{base}/v1.0/users?$skip=5"), &tok).await;
    assert_eq!(s, 400);

    // nextLink: absolute, preserves parameters, tamper-proof
    let (_, _, v) = get(
        &c,
        &format!("{base}/v1.0/users?$top=5&$select=id,mail"),
        &tok,
    )
    .await;
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!("{base}/v1.0/users?")), "{next}");
    assert!(
        next.contains("$select=id,mail") && next.contains("$top=5"),
        "{next}"
    );
    let (s, _, v2) = get(&c, next, &tok).await;
    assert_eq!(s, 200);
    assert_eq!(v2["value"].as_array().unwrap().len(), 5);
    assert_ne!(
        ids(v["value"].as_array().unwrap()),
        ids(v2["value"].as_array().unwrap())
    );
    let (prefix, tokpart) = next.split_once("$skiptoken=").unwrap();
    let mut t: Vec<char> = tokpart.chars().collect();
    let i = t.len() / 2;
    t[i] = if t[i] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{prefix}$skiptoken={}", t.into_iter().collect::<String>());
    let (s, _, _) = get(&c, &tampered, &tok).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn page_cap_and_short_pages() {
    let emu = start(Config {
        users: 400,
        page_cap: 120,
        ..Config::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let (sizes, items) = get_all(&c, &format!("{base}/v1.0/users?$top=999"), &tok).await;
    assert_eq!(sizes, vec![120, 120, 120, 40]);
    assert_eq!(items.len(), 400);

    emu.set_mode(Mode::ShortPages);
    let (sizes, items) = get_all(&c, &format!("{base}/v1.0/users?$top=999"), &tok).await;
    assert_eq!(items.len(), 400);
    let unique: BTreeSet<String> = ids(&items).into_iter().collect();
    assert_eq!(unique.len(), 400);
    assert!(sizes.len() > 4, "{sizes:?}");
}

#[tokio::test]
async fn select_semantics() {
    let emu = start(Config::default()).await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let ext = format!("extension_{}_costCenter", emu.config().extension_app_id);

    let (s, h, v) = get(&c, &format!("{base}/v1.0/users?$top=3"), &tok).await;
    assert_eq!(s, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        v["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users"
    );
    let keys: BTreeSet<&str> = v["value"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = [
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want);

    let sel = format!("displayName,onPremisesExtensionAttributes,accountEnabled,{ext}");
    let (_, items) = get_all(
        &c,
        &format!("{base}/v1.0/users?$select={sel}&$top=999"),
        &tok,
    )
    .await;
    let truth = emu.truth();
    let by_id: BTreeMap<&str, &User> = truth.users.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut with_ext = 0;
    let mut with_attr7 = 0;
    for it in &items {
        let o = it.as_object().unwrap();
        let u = by_id[o["id"].as_str().unwrap()];
        let attrs = o["onPremisesExtensionAttributes"].as_object().unwrap();
        assert_eq!(attrs.len(), 15);
        assert!(attrs.contains_key("extensionAttribute15"));
        if attrs["extensionAttribute7"].is_string() {
            with_attr7 += 1;
        }
        assert_eq!(o["accountEnabled"].as_bool(), Some(u.account_enabled));
        match u.extensions.get(&ext) {
            Some(val) => {
                with_ext += 1;
                assert_eq!(&o[&ext], val);
            }
            None => assert!(!o.contains_key(&ext), "unset extension must be left out"),
        }
        for k in o.keys() {
            assert!(
                [
                    "id",
                    "displayName",
                    "onPremisesExtensionAttributes",
                    "accountEnabled",
                    ext.as_str()
                ]
                .contains(&k.as_str()),
                "unexpected {k}"
            );
        }
    }
    assert!(with_ext > 10 && with_ext < 40, "{with_ext}");
    assert!(with_attr7 > 10 && with_attr7 < 40, "{with_attr7}");
    let (_, _, v) = get(
        &c,
        &format!("{base}/v1.0/users?$select=id,displayName&$top=1"),
        &tok,
    )
    .await;
    assert_eq!(
        v["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users(id,displayName)"
    );
    // extensions are not returned without $select
    let (_, _, v) = get(&c, &format!("{base}/v1.0/users?$top=999"), &tok).await;
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get(&ext).is_none())
    );

    for p in ["skills", "aboutMe", "mailboxSettings", "hireDate"] {
        let (s, _, v) = get(&c, &format!("{base}/v1.0/users?$select=id,{p}"), &tok).await;
        assert_eq!(s, 501, "{p}");
        assert_eq!(v["error"]["code"], "NotImplemented");
    }
    let (s, _, _) = get(
        &c,
        &format!("{base}/v1.0/users?$select=id,noSuchThing"),
        &tok,
    )
    .await;
    assert_eq!(s, 400);

    emu.set_mode(Mode::DropAttributes(vec![
        "mail".into(),
        "extensionAttribute7".into(),
    ]));
    let (_, items) = get_all(
        &c,
        &format!("{base}/v1.0/users?$select=id,mail,onPremisesExtensionAttributes&$top=999"),
        &tok,
    )
    .await;
    for it in &items {
        assert!(it.get("mail").is_none());
        assert!(it["onPremisesExtensionAttributes"]["extensionAttribute7"].is_null());
    }
}

#[tokio::test]
async fn filter_count_members_and_groups() {
    let emu = start(Config {
        users: 200,
        groups: 8,
        memberships: 500,
        ..Config::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let truth = emu.truth();
    let u = truth.users.iter().find(|u| u.mail.is_some()).unwrap();

    let (s, _, v) = get(
        &c,
        &format!(
            "{base}/v1.0/users?$filter=userPrincipalName%20eq%20'{}'",
            u.user_principal_name
        ),
        &tok,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(v["value"].as_array().unwrap()), vec![u.id.clone()]);
    let prefix = &u.user_principal_name[..4];
    let (_, items) = get_all(
        &c,
        &format!("{base}/v1.0/users?$filter=startsWith(userPrincipalName,'{prefix}')"),
        &tok,
    )
    .await;
    let want = truth
        .users
        .iter()
        .filter(|x| x.user_principal_name.starts_with(prefix))
        .count();
    assert_eq!(items.len(), want);

    // advanced queries need ConsistencyLevel + $count
    let ne = format!("{base}/v1.0/users?$filter=mail%20ne%20null&$count=true");
    let (s, _, v) = get(&c, &ne, &tok).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "Request_UnsupportedQuery");
    let (s, _, v) = get_h(&c, &ne, &tok, &[("ConsistencyLevel", "eventual")]).await;
    assert_eq!(s, 200, "{v}");
    let with_mail = truth.users.iter().filter(|u| u.mail.is_some()).count();
    assert_eq!(v["@odata.count"], with_mail);
    let (s, _, _) = get(&c, &format!("{base}/v1.0/users/$count"), &tok).await;
    assert_eq!(s, 400);
    let r = c
        .get(format!("{base}/v1.0/users/$count"))
        .bearer_auth(&tok)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "200");

    // groups list
    let (_, groups) = get_all(&c, &format!("{base}/v1.0/groups"), &tok).await;
    assert_eq!(groups.len(), 8);
    assert!(groups.iter().any(|g| g["groupTypes"] == json!(["Unified"])));
    let (_, unified) = get_all(
        &c,
        &format!("{base}/v1.0/groups?$filter=groupTypes/any(c:c%20eq%20'Unified')"),
        &tok,
    )
    .await;
    assert_eq!(
        unified.len(),
        truth
            .groups
            .iter()
            .filter(|g| g.group_types == ["Unified"])
            .count()
    );

    // members, casts, transitive
    let (parent, _, child) = truth
        .memberships
        .iter()
        .find(|(_, k, _)| *k == MemberKind::Group)
        .cloned()
        .expect("nested group");
    let direct: BTreeSet<String> = truth
        .memberships
        .iter()
        .filter(|(g, _, _)| *g == parent)
        .map(|(_, _, m)| m.clone())
        .collect();
    let (_, items) = get_all(
        &c,
        &format!("{base}/v1.0/groups/{parent}/members?$top=7"),
        &tok,
    )
    .await;
    assert_eq!(ids(&items).into_iter().collect::<BTreeSet<_>>(), direct);
    assert!(items.iter().all(|i| i["@odata.type"].is_string()));
    assert!(
        items
            .iter()
            .any(|i| i["@odata.type"] == "#microsoft.graph.group")
    );
    let (_, users_only) = get_all(
        &c,
        &format!(
            "{base}/v1.0/groups/{parent}/members/microsoft.graph.user?$select=id,userPrincipalName"
        ),
        &tok,
    )
    .await;
    let direct_users = truth
        .memberships
        .iter()
        .filter(|(g, k, _)| *g == parent && *k == MemberKind::User)
        .count();
    assert_eq!(users_only.len(), direct_users);
    assert!(
        users_only
            .iter()
            .all(|i| i["@odata.type"] == "#microsoft.graph.user"
                && i["userPrincipalName"].is_string())
    );
    assert!(!ids(&users_only).contains(&child));
    let (_, trans) = get_all(
        &c,
        &format!("{base}/v1.0/groups/{parent}/transitiveMembers"),
        &tok,
    )
    .await;
    let trans: BTreeSet<String> = ids(&trans).into_iter().collect();
    assert!(trans.is_superset(&direct));
    for (g, _, m) in &truth.memberships {
        if *g == child {
            assert!(trans.contains(m));
        }
    }
    // filtering on a user property without a cast
    let (s, _, v) = get(
        &c,
        &format!("{base}/v1.0/groups/{parent}/members?$filter=onPremisesExtensionAttributes/extensionAttribute15%20eq%20'x'"),
        &tok,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "Request_UnsupportedQuery");
    let (s, _, _) = get(
        &c,
        &format!("{base}/v1.0/groups/00000000-0000-4000-8000-000000000000/members"),
        &tok,
    )
    .await;
    assert_eq!(s, 404);
}

// ------------------------------------------------------------------------------------------
// Delta
// ------------------------------------------------------------------------------------------

fn delta_config() -> Config {
    Config {
        users: 300,
        groups: 8,
        memberships: 900,
        delta_page_size: 40,
        ..Config::default()
    }
}

#[tokio::test]
async fn delta_first_round_matches_truth() {
    let emu = start(Config {
        delta_page_size: 15,
        ..delta_config()
    })
    .await;
    emu.set_mode(Mode::MembersSlice(25));
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let ext = emu.config().extension_app_id.clone();

    let (entries, dlink, pages) = delta_round(
        &c,
        &format!("{base}/v1.0/users/delta?$select={}", user_select(&emu)),
        &tok,
        false,
    )
    .await;
    assert!(pages >= 8, "{pages}");
    assert!(dlink.contains("$deltatoken="));
    let mut rep = Replica::default();
    rep.apply_users(&entries);
    let truth = emu.truth();
    rep.assert_users_match(&truth, &ext);

    let (entries, gdlink, pages) = delta_round(
        &c,
        &format!("{base}/v1.0/groups/delta?$select=displayName,description,securityEnabled,groupTypes,members"),
        &tok,
        false,
    )
    .await;
    assert!(pages >= 2, "{pages}");
    // the biggest group is split into several entries with the same scalars
    let mut per_group: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in &entries {
        per_group
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
        if let Some(m) = e.get("members@delta") {
            assert!(m.as_array().unwrap().len() <= 25);
        }
    }
    let (gid, split) = per_group.iter().max_by_key(|(_, v)| v.len()).unwrap();
    assert!(split.len() > 2, "group {gid} not split");
    for e in split {
        assert_eq!(e["displayName"], split[0]["displayName"]);
    }
    rep.apply_groups(&entries);
    rep.assert_groups_match(&truth);

    // No changes → empty round with a new deltaLink.
    let (entries, d2, pages) = delta_round(&c, &dlink, &tok, false).await;
    assert!(entries.is_empty());
    assert_eq!(pages, 1);
    assert_ne!(d2, dlink);
    let (entries, _, _) = delta_round(&c, &gdlink, &tok, false).await;
    assert!(entries.is_empty());

    // Without $select, groups delta includes members@delta by default.
    let (entries, _, _) = delta_round(&c, &format!("{base}/v1.0/groups/delta"), &tok, false).await;
    assert!(entries.iter().any(|e| e.get("members@delta").is_some()));
    assert!(entries.iter().all(|e| e.get("displayName").is_some()));
}

#[tokio::test]
async fn delta_second_round_returns_exact_changes() {
    let emu = start(delta_config()).await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let ext = emu.config().extension_app_id.clone();
    let user_url = format!("{base}/v1.0/users/delta?$select={}", user_select(&emu));
    let group_url = format!(
        "{base}/v1.0/groups/delta?$select=displayName,description,securityEnabled,groupTypes,members"
    );

    let (ue, udl, _) = delta_round(&c, &user_url, &tok, false).await;
    let (ge, gdl, _) = delta_round(&c, &group_url, &tok, false).await;
    let mut rep = Replica::default();
    rep.apply_users(&ue);
    rep.apply_groups(&ge);

    let truth = emu.truth();
    let member_groups = |uid: &str| -> BTreeSet<String> {
        truth
            .memberships
            .iter()
            .filter(|(_, _, m)| m == uid)
            .map(|(g, _, _)| g.clone())
            .collect()
    };
    // pick users that are members of something
    let mut members_users = truth
        .users
        .iter()
        .filter(|u| !member_groups(&u.id).is_empty())
        .map(|u| u.id.clone());
    let updated = members_users.next().unwrap();
    let soft = members_users.next().unwrap();
    let hard = members_users.next().unwrap();
    let g0 = truth.groups[0].id.clone();
    let g1 = truth.groups[1..7]
        .iter()
        .find(|g| g.description.is_some())
        .expect("a group with a description")
        .id
        .clone();
    let doomed = truth.groups[7].id.clone();
    let g1_member = truth
        .memberships
        .iter()
        .find(|(g, k, m)| *g == g1 && *k == MemberKind::User && *m != soft && *m != hard)
        .map(|(_, _, m)| m.clone())
        .unwrap();

    let mut new_user = User::new("", "new.person@contoso.example", "New Person");
    new_user.id = "0000aaaa-1111-4222-8333-444455556666".into();
    new_user.job_title = Some("Intern".into());
    let new_id = new_user.id.clone();
    let mut new_group = Group::new("0000bbbb-1111-4222-8333-444455556666", "Brand New");
    new_group.group_types = vec!["Unified".into()];
    new_group.mail_enabled = true;
    new_group.security_enabled = false;
    let new_gid = new_group.id.clone();

    emu.try_mutate(Mutation::AddUser(new_user)).unwrap();
    emu.try_mutate(Mutation::UpdateUser {
        id: updated.clone(),
        patch: json!({"jobTitle": "Chief Emulation Officer", "mail": null,
            "onPremisesExtensionAttributes": {"extensionAttribute7": "Vendor"},
            format!("extension_{ext}_costCenter"): "CC-9999"}),
    })
    .unwrap();
    emu.try_mutate(Mutation::SoftDeleteUser(soft.clone()))
        .unwrap();
    emu.try_mutate(Mutation::HardDeleteUser(hard.clone()))
        .unwrap();
    emu.try_mutate(Mutation::AddGroup(new_group)).unwrap();
    emu.try_mutate(Mutation::UpdateGroup {
        id: g1.clone(),
        patch: json!({"displayName": "Renamed Group", "description": null}),
    })
    .unwrap();
    emu.try_mutate(Mutation::DeleteGroup(doomed.clone()))
        .unwrap();
    emu.try_mutate(Mutation::AddMember {
        group_id: g0.clone(),
        kind: MemberKind::User,
        member_id: new_id.clone(),
    })
    .unwrap();
    emu.try_mutate(Mutation::AddMember {
        group_id: new_gid.clone(),
        kind: MemberKind::User,
        member_id: updated.clone(),
    })
    .unwrap();
    emu.try_mutate(Mutation::RemoveMember {
        group_id: g1.clone(),
        member_id: g1_member.clone(),
    })
    .unwrap();
    assert!(
        emu.try_mutate(Mutation::RemoveMember {
            group_id: g1.clone(),
            member_id: g1_member.clone()
        })
        .is_err()
    );

    // users: exactly the four changes
    let (ue2, udl2, _) = delta_round(&c, &udl, &tok, false).await;
    let by_id: BTreeMap<String, &Value> = ue2
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(
        by_id.keys().cloned().collect::<BTreeSet<_>>(),
        [new_id.clone(), updated.clone(), soft.clone(), hard.clone()]
            .into_iter()
            .collect()
    );
    assert_eq!(ue2.len(), 4);
    assert_eq!(by_id[&soft]["@removed"]["reason"], "changed");
    assert_eq!(by_id[&hard]["@removed"]["reason"], "deleted");
    assert_eq!(by_id[&new_id]["jobTitle"], "Intern");
    let up = by_id[&updated];
    assert_eq!(up["jobTitle"], "Chief Emulation Officer");
    assert!(
        up["mail"].is_null() && up.get("mail").is_some(),
        "cleared → null"
    );
    assert!(
        up["displayName"].is_string(),
        "full representation by default"
    );
    assert_eq!(
        up["onPremisesExtensionAttributes"]["extensionAttribute7"],
        "Vendor"
    );

    // groups
    let (ge2, gdl2, _) = delta_round(&c, &gdl, &tok, false).await;
    let mut expected: BTreeSet<String> = [g0.clone(), g1.clone(), doomed.clone(), new_gid.clone()]
        .into_iter()
        .collect();
    expected.extend(member_groups(&soft));
    expected.extend(member_groups(&hard));
    // the deleted group was a member of a parent?
    for (g, _, m) in &truth.memberships {
        if *m == doomed {
            expected.insert(g.clone());
        }
    }
    let got: BTreeSet<String> = ge2
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
    let doomed_entry = ge2.iter().find(|e| e["id"] == doomed.as_str()).unwrap();
    assert_eq!(doomed_entry["@removed"]["reason"], "deleted");
    let g1_entry = ge2.iter().find(|e| e["id"] == g1.as_str()).unwrap();
    assert_eq!(g1_entry["displayName"], "Renamed Group");
    assert!(g1_entry["description"].is_null() && g1_entry.get("description").is_some());
    let g1_removed: Vec<&Value> = g1_entry["members@delta"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == g1_member.as_str())
        .collect();
    assert_eq!(g1_removed.len(), 1);
    assert_eq!(g1_removed[0]["@removed"]["reason"], "deleted");
    let g0_entry = ge2.iter().find(|e| e["id"] == g0.as_str()).unwrap();
    assert!(
        g0_entry["members@delta"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == new_id.as_str() && m.get("@removed").is_none())
    );
    // only changed memberships are listed
    for e in &ge2 {
        if let Some(ms) = e.get("members@delta") {
            for m in ms.as_array().unwrap() {
                let mid = m["id"].as_str().unwrap();
                assert!(
                    [
                        new_id.as_str(),
                        updated.as_str(),
                        soft.as_str(),
                        hard.as_str(),
                        g1_member.as_str(),
                        doomed.as_str()
                    ]
                    .contains(&mid),
                    "unexpected member change {m}"
                );
            }
        }
    }
    rep.apply_users(&ue2);
    rep.apply_groups(&ge2);
    let truth2 = emu.truth();
    rep.assert_users_match(&truth2, &ext);
    rep.assert_groups_match(&truth2);
    assert!(rep.hard.contains(&hard));

    // restore: normal entry again, memberships come back
    emu.try_mutate(Mutation::RestoreUser(soft.clone())).unwrap();
    let (ue3, udl3, _) = delta_round(&c, &udl2, &tok, false).await;
    assert_eq!(ids(&ue3), vec![soft.clone()]);
    assert!(ue3[0].get("@removed").is_none());
    let (ge3, _, _) = delta_round(&c, &gdl2, &tok, false).await;
    let groups3: BTreeSet<String> = ids(&ge3).into_iter().collect();
    let truth3 = emu.truth();
    let soft_groups_now: BTreeSet<String> = truth3
        .memberships
        .iter()
        .filter(|(_, _, m)| *m == soft)
        .map(|(g, _, _)| g.clone())
        .collect();
    assert!(!soft_groups_now.is_empty());
    assert_eq!(groups3, soft_groups_now);
    rep.apply_users(&ue3);
    rep.apply_groups(&ge3);
    rep.assert_users_match(&truth3, &ext);
    rep.assert_groups_match(&truth3);

    // Prefer: return=minimal → only changed properties
    emu.try_mutate(Mutation::UpdateUser {
        id: updated.clone(),
        patch: json!({"department": "Legal"}),
    })
    .unwrap();
    let (ue4, udl4, _) = delta_round(&c, &udl3, &tok, true).await;
    assert_eq!(ue4.len(), 1);
    let keys: BTreeSet<&str> = ue4[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["department", "id"].into_iter().collect());

    // a change to a property that is not selected does not show up
    let (_, narrow, _) = delta_round(
        &c,
        &format!("{base}/v1.0/users/delta?$select=id,displayName"),
        &tok,
        false,
    )
    .await;
    emu.try_mutate(Mutation::UpdateUser {
        id: updated.clone(),
        patch: json!({"jobTitle": "Again"}),
    })
    .unwrap();
    let (e, _, _) = delta_round(&c, &narrow, &tok, false).await;
    assert!(e.is_empty(), "{e:?}");
    let (e, _, _) = delta_round(&c, &udl4, &tok, false).await;
    assert_eq!(ids(&e), vec![updated.clone()]);
}

#[tokio::test]
async fn delta_expiry_latest_and_gone() {
    let emu = start(delta_config()).await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();

    let (_, dl, _) = delta_round(
        &c,
        &format!("{base}/v1.0/users/delta?$select=id,displayName"),
        &tok,
        false,
    )
    .await;

    // $deltatoken=latest: no data, only a deltaLink; later changes appear from there
    let (s, _, v) = get(
        &c,
        &format!("{base}/v1.0/users/delta?$deltatoken=latest&$select=id,displayName"),
        &tok,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"], json!([]));
    let latest = v["@odata.deltaLink"].as_str().unwrap().to_string();
    let uid = emu.truth().users[3].id.clone();
    emu.try_mutate(Mutation::UpdateUser {
        id: uid.clone(),
        patch: json!({"displayName": "Changed Name"}),
    })
    .unwrap();
    let (e, _, _) = delta_round(&c, &latest, &tok, false).await;
    assert_eq!(ids(&e), vec![uid]);

    // Gone with Location = initial URL with an empty $deltatoken
    emu.push_fault(FaultRule::new(Endpoint::UsersDelta, 1, Fault::Gone));
    let r = c.get(&dl).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{base}/v1.0/users/delta?")),
        "{loc}"
    );
    assert!(loc.ends_with("$deltatoken="), "{loc}");
    assert!(loc.contains("$select=id,displayName"), "{loc}");
    let (e, _, _) = delta_round(&c, &loc, &tok, false).await;
    assert_eq!(e.len(), emu.truth().users.len(), "full resync");

    // 8 days later the deltaLink is expired
    emu.advance_clock(8 * 24 * 3600);
    let tok = token(&c, &emu).await;
    let (s, _, v) = get(&c, &dl, &tok).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "syncStateNotFound");

    // tampered deltatoken
    let (s, _, _) = get(&c, &format!("{}x", dl.trim_end_matches('A')), &tok).await;
    assert!(s == 400, "{s}");
}

#[tokio::test]
async fn delta_shuffle_replay_short_pages_still_converge() {
    let emu = start(delta_config()).await;
    emu.set_mode(Mode::ShuffleAndReplay);
    emu.set_mode(Mode::ShortPages);
    emu.set_mode(Mode::MembersSlice(10));
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let ext = emu.config().extension_app_id.clone();
    let (ue, udl, _) = delta_round(
        &c,
        &format!("{base}/v1.0/users/delta?$select={}", user_select(&emu)),
        &tok,
        false,
    )
    .await;
    let (ge, gdl, _) = delta_round(&c, &format!("{base}/v1.0/groups/delta?$select=displayName,description,securityEnabled,groupTypes,members"), &tok, false).await;
    let mut rep = Replica::default();
    rep.apply_users(&ue);
    rep.apply_groups(&ge);
    let truth = emu.truth();
    rep.assert_users_match(&truth, &ext);
    rep.assert_groups_match(&truth);
    let u = truth
        .users
        .iter()
        .map(|u| u.id.clone())
        .take(4)
        .collect::<Vec<_>>();
    let g = truth.groups[2].id.clone();
    emu.try_mutate(Mutation::SoftDeleteUser(u[0].clone()))
        .unwrap();
    emu.try_mutate(Mutation::UpdateUser {
        id: u[1].clone(),
        patch: json!({"surname": "Zed"}),
    })
    .unwrap();
    let _ = emu.try_mutate(Mutation::AddMember {
        group_id: g.clone(),
        kind: MemberKind::User,
        member_id: u[2].clone(),
    });
    let (ue, udl, _) = delta_round(&c, &udl, &tok, false).await;
    let (ge, gdl, _) = delta_round(&c, &gdl, &tok, false).await;
    rep.apply_users(&ue);
    rep.apply_groups(&ge);
    emu.try_mutate(Mutation::HardDeleteUser(u[3].clone()))
        .unwrap();
    emu.try_mutate(Mutation::RestoreUser(u[0].clone())).unwrap();
    let (ue, _, _) = delta_round(&c, &udl, &tok, false).await;
    let (ge, _, _) = delta_round(&c, &gdl, &tok, false).await;
    rep.apply_users(&ue);
    rep.apply_groups(&ge);
    let truth = emu.truth();
    rep.assert_users_match(&truth, &ext);
    rep.assert_groups_match(&truth);
}

// ------------------------------------------------------------------------------------------
// Faults
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn scripted_faults() {
    let emu = start(Config::default()).await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let users = format!("{base}/v1.0/users?$top=5");

    // skip 1, then fail twice with 503 + Retry-After
    emu.push_fault(FaultRule {
        endpoint: Endpoint::Users,
        skip: 1,
        times: 2,
        fault: Fault::ServiceUnavailable {
            retry_after: Some(2),
        },
    });
    let mut statuses = Vec::new();
    for attempt in 0..4 {
        let r = c
            .get(&users)
            .bearer_auth(&tok)
            .header("retry-attempt", attempt.to_string())
            .header(
                "client-request-id",
                format!("00000000-0000-4000-8000-00000000000{attempt}"),
            )
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "2");
            assert_eq!(
                r.headers()["client-request-id"],
                format!("00000000-0000-4000-8000-00000000000{attempt}").as_str()
            );
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "serviceNotAvailable");
            assert_eq!(
                v["error"]["innerError"]["client-request-id"],
                format!("00000000-0000-4000-8000-00000000000{attempt}")
            );
        }
    }
    assert_eq!(statuses, vec![200, 503, 503, 200]);
    let rec: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/v1.0/users"))
        .collect();
    assert_eq!(rec.len(), 4);
    assert_eq!(rec[2].retry_attempt.as_deref(), Some("2"));
    assert_eq!(rec[1].status, 503);
    assert!(rec.iter().all(|r| r.authorization_present));
    assert_eq!(
        rec[3].client_request_id.as_deref(),
        Some("00000000-0000-4000-8000-000000000003")
    );

    // 429 with and without Retry-After
    emu.push_fault(FaultRule::new(
        Endpoint::AnyGraph,
        1,
        Fault::TooManyRequests {
            retry_after: Some(7),
        },
    ));
    emu.push_fault(FaultRule::new(
        Endpoint::AnyGraph,
        1,
        Fault::TooManyRequests { retry_after: None },
    ));
    let r = c.get(&users).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(r.headers().contains_key("x-ms-throttle-scope"));
    assert_eq!(
        r.headers()["x-ms-throttle-information"],
        "ResourceUnitLimitExceeded"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "TooManyRequests");
    let r = c.get(&users).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(!r.headers().contains_key("retry-after"));

    // 504 HTML and empty, 500
    emu.push_fault(FaultRule::new(
        Endpoint::Users,
        1,
        Fault::GatewayTimeoutHtml,
    ));
    emu.push_fault(FaultRule::new(
        Endpoint::Users,
        1,
        Fault::GatewayTimeoutEmpty,
    ));
    emu.push_fault(FaultRule::new(Endpoint::Users, 1, Fault::InternalError));
    let r = c.get(&users).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<html>"));
    let r = c.get(&users).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().is_empty());
    let (s, _, v) = get(&c, &users, &tok).await;
    assert_eq!(s, 500);
    assert_eq!(v["error"]["code"], "UnknownError");

    // malformed JSON
    emu.push_fault(FaultRule::new(Endpoint::Users, 1, Fault::MalformedJson));
    let r = c.get(&users).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    // connection reset mid-body
    emu.push_fault(FaultRule::new(Endpoint::Users, 1, Fault::ResetConnection));
    let res = async {
        let r = c.get(&users).bearer_auth(&tok).send().await?;
        r.bytes().await
    }
    .await;
    assert!(res.is_err(), "body should fail: {res:?}");

    // hang → client timeout, then normal
    emu.push_fault(FaultRule::new(
        Endpoint::Users,
        1,
        Fault::Hang(Duration::from_millis(1500)),
    ));
    let r = c
        .get(&users)
        .bearer_auth(&tok)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    let (s, _, _) = get(&c, &users, &tok).await;
    assert_eq!(s, 200);

    // expired token, sync state, token endpoint fault
    emu.push_fault(FaultRule::new(Endpoint::Users, 1, Fault::ExpiredToken));
    let (s, _, v) = get(&c, &users, &tok).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    emu.push_fault(FaultRule::new(
        Endpoint::UsersDelta,
        1,
        Fault::SyncStateNotFound,
    ));
    let (s, _, v) = get(&c, &format!("{base}/v1.0/users/delta"), &tok).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "syncStateNotFound");
    emu.push_fault(FaultRule::new(
        Endpoint::Token,
        1,
        Fault::ServiceUnavailable { retry_after: None },
    ));
    let cfg = emu.config().clone();
    let r = token_response(
        &c,
        &emu,
        &[
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(r.status(), 503);

    // clear_faults
    emu.push_fault(FaultRule::new(Endpoint::Any, 5, Fault::InternalError));
    emu.clear_faults();
    let (s, _, _) = get(&c, &users, &tok).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn pause_refuses_connections_and_resume_works() {
    let emu = start(Config::default()).await;
    let c = client();
    let tok = token(&c, &emu).await;
    let url = format!("{}/v1.0/users?$top=1", emu.base_url());
    let (s, _, _) = get(&c, &url, &tok).await;
    assert_eq!(s, 200);

    emu.pause().await;
    let fresh = client();
    let err = fresh.get(&url).bearer_auth(&tok).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    emu.resume().await.unwrap();
    let fresh = client();
    let (s, _, _) = get(&fresh, &url, &tok).await;
    assert_eq!(s, 200);
    let (s, _, _) = get(&c, &url, &tok).await;
    assert_eq!(s, 200);
    emu.stop().await;
}

#[tokio::test]
async fn control_api_over_http() {
    let emu = start(Config::default()).await;
    let c = client();
    let base = emu.base_url();
    let truth: Truth = c
        .get(format!("{base}/_emulator/truth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth, emu.truth());
    assert_eq!(truth.users.len(), 50);
    assert_eq!(truth.groups.len(), 5);
    let direct_user_memberships = truth
        .memberships
        .iter()
        .filter(|m| m.1 == MemberKind::User)
        .count();
    assert_eq!(direct_user_memberships, 120);
    assert!(truth.memberships.iter().any(|m| m.1 == MemberKind::Group));

    let uid = truth.users[0].id.clone();
    let r = c
        .post(format!("{base}/_emulator/mutations"))
        .json(&json!([{"SoftDeleteUser": uid}, {"UpdateUser": {"id": truth.users[1].id, "patch": {"jobTitle": "X"}}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(emu.truth().soft_deleted_users.contains(&uid));
    let r = c
        .post(format!("{base}/_emulator/mutations"))
        .json(&json!([{"SoftDeleteUser": "nope"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c
        .post(format!("{base}/_emulator/faults"))
        .json(&json!([{"endpoint": "Token", "times": 1, "fault": "InternalError"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cfg = emu.config().clone();
    let form = [
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", cfg.client_secret.as_str()),
        ("scope", "https://graph.microsoft.com/.default"),
        ("grant_type", "client_credentials"),
    ];
    assert_eq!(token_response(&c, &emu, &form).await.status(), 500);
    assert_eq!(token_response(&c, &emu, &form).await.status(), 200);

    let r = c
        .post(format!("{base}/_emulator/mode"))
        .json(&json!({"TokenExpiresIn": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = token_response(&c, &emu, &form).await.json().await.unwrap();
    assert_eq!(v["expires_in"], 42);
    c.post(format!("{base}/_emulator/mode"))
        .json(&json!("Normal"))
        .send()
        .await
        .unwrap();
    assert_eq!(emu.modes().token_expires_in, None);

    let reqs: Vec<Value> = c
        .get(format!("{base}/_emulator/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0]["status"], 500);
    assert_eq!(reqs[0]["method"], "POST");
}

#[tokio::test]
async fn generation_is_deterministic_and_realistic() {
    let cfg = Config {
        users: 500,
        groups: 40,
        memberships: 2000,
        ..Config::default()
    };
    let a = start(cfg.clone()).await;
    let b = start(cfg).await;
    let ta = a.truth();
    assert_eq!(ta, b.truth());
    assert_eq!(
        ta.memberships
            .iter()
            .filter(|m| m.1 == MemberKind::User)
            .count(),
        2000
    );
    assert!(
        ta.users
            .iter()
            .all(|u| u.user_principal_name.ends_with("@contoso.example"))
    );
    assert!(ta.users.iter().any(|u| u.mail.is_none()));
    assert!(ta.users.iter().any(|u| !u.account_enabled));
    assert!(ta.groups.iter().any(|g| g.group_types == ["Unified"]));
    assert!(
        ta.groups
            .iter()
            .any(|g| g.security_enabled && g.group_types.is_empty())
    );
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for (g, _, _) in &ta.memberships {
        *sizes.entry(g.as_str()).or_default() += 1;
    }
    let max = sizes.values().max().copied().unwrap_or(0);
    let min = sizes.values().min().copied().unwrap_or(0);
    assert!(max > 5 * min.max(1), "uneven distribution: {min}..{max}");
    let other = start(Config {
        seed: 2,
        users: 500,
        groups: 40,
        memberships: 2000,
        ..Config::default()
    })
    .await;
    assert_ne!(other.truth().users[0].id, ta.users[0].id);
}

#[tokio::test]
async fn token_bucket_throttle() {
    let emu = start(Config {
        throttle_ru_per_10s: Some(10),
        ..Config::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &emu).await;
    let url = format!("{}/v1.0/users", emu.base_url());
    let mut statuses = Vec::new();
    let mut saw_percentage = false;
    let mut retry_after = None;
    for _ in 0..7 {
        let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.headers()["x-ms-resource-unit"], "2");
        saw_percentage |= r.headers().contains_key("x-ms-throttle-limit-percentage");
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[200, 200, 200, 200, 200]);
    assert_eq!(statuses[5], 429);
    assert!(saw_percentage);
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.fault.as_deref() == Some("Throttled"))
    );
}

#[tokio::test]
async fn delta_filter_by_ids_and_get_by_id() {
    let emu = start(delta_config()).await;
    let c = client();
    let tok = token(&c, &emu).await;
    let base = emu.base_url();
    let truth = emu.truth();
    let (a, b) = (truth.users[10].id.clone(), truth.users[20].id.clone());
    let url = format!(
        "{base}/v1.0/users/delta?$select=id,displayName&$filter=id%20eq%20'{a}'%20or%20id%20eq%20'{b}'"
    );
    let (e, dl, _) = delta_round(&c, &url, &tok, false).await;
    assert_eq!(
        ids(&e).into_iter().collect::<BTreeSet<_>>(),
        [a.clone(), b.clone()].into_iter().collect()
    );
    emu.try_mutate(Mutation::UpdateUser {
        id: truth.users[30].id.clone(),
        patch: json!({"displayName": "Other"}),
    })
    .unwrap();
    emu.try_mutate(Mutation::UpdateUser {
        id: a.clone(),
        patch: json!({"displayName": "Mine"}),
    })
    .unwrap();
    let (e, _, _) = delta_round(&c, &dl, &tok, false).await;
    assert_eq!(ids(&e), vec![a.clone()]);
    let (s, _, _) = get(
        &c,
        &format!("{base}/v1.0/users/delta?$filter=startsWith(displayName,'A')"),
        &tok,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = get(
        &c,
        &format!("{base}/v1.0/users/delta?$orderby=displayName"),
        &tok,
    )
    .await;
    assert_eq!(s, 400);

    let (s, _, v) = get(
        &c,
        &format!("{base}/v1.0/users/{a}?$select=id,displayName"),
        &tok,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["displayName"], "Mine");
    let upn = truth.users[20].user_principal_name.clone();
    let (s, _, v) = get(&c, &format!("{base}/v1.0/users/{upn}"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!(v["id"], b.as_str());
    let g = truth.groups[0].id.clone();
    let (s, _, v) = get(&c, &format!("{base}/v1.0/groups/{g}"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!(v["displayName"], truth.groups[0].display_name.as_str());
    let (s, _, v) = get(
        &c,
        &format!("{base}/v1.0/users/00000000-0000-4000-8000-000000000000"),
        &tok,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "Request_ResourceNotFound");

    // groups delta Gone keeps the select; deltatoken of the other resource is rejected
    emu.push_fault(FaultRule::new(Endpoint::GroupsDelta, 1, Fault::Gone));
    let r = c
        .get(format!(
            "{base}/v1.0/groups/delta?$select=displayName,members"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.contains("/v1.0/groups/delta?$select=displayName,members&$deltatoken="),
        "{loc}"
    );
    let token_part = dl.split("$deltatoken=").nth(1).unwrap();
    let (s, _, _) = get(
        &c,
        &format!("{base}/v1.0/groups/delta?$deltatoken={token_part}"),
        &tok,
    )
    .await;
    assert_eq!(s, 400);
}

async fn smoke(emu: &Emulator) {
    let c = client();
    let tok = token(&c, emu).await;
    let (s, _, v) = get(&c, &format!("{}/v1.0/users?$top=2", emu.base_url()), &tok).await;
    assert_eq!(s, 200, "{v}");
    emu.pause().await;
    assert!(
        client()
            .get(emu.base_url())
            .send()
            .await
            .unwrap_err()
            .is_connect()
    );
    emu.resume().await.unwrap();
    let (s, _, _) = get(
        &client(),
        &format!("{}/v1.0/users?$top=2", emu.base_url()),
        &tok,
    )
    .await;
    assert_eq!(s, 200);
    emu.clear_requests();
    assert!(emu.requests().is_empty());
    emu.stop().await;
}

#[actix_web::test]
async fn works_on_an_actix_runtime() {
    let emu = start(Config::default()).await;
    smoke(&emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_multi_thread_runtime() {
    let emu = start(Config::default()).await;
    let e2 = emu.clone();
    tokio::spawn(async move { smoke(&e2).await }).await.unwrap();
}
