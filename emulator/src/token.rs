//! The Entra ID v2.0 token endpoint, client-credentials grant (form secret or HTTP Basic), with
//! AAD-style error bodies and unsigned JWT-shaped access tokens.

use crate::server::{Ctx, IssuedToken};
use crate::util::{aad_timestamp, b64std_decode, b64url, is_guid, new_guid};
use actix_web::HttpResponse;
use actix_web::http::Method;
use serde_json::json;
use std::collections::HashMap;

const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub(crate) const ROLES: &[&str] = &["User.Read.All", "GroupMember.Read.All"];

/// An AAD error response with the full body.
fn aad_error(ctx: &Ctx<'_>, status: u16, error: &str, code: u32, text: &str) -> HttpResponse {
    let trace_id = new_guid();
    let correlation_id = ctx
        .header("client-request-id")
        .filter(|c| is_guid(c))
        .unwrap_or_else(new_guid);
    let ts = aad_timestamp(ctx.now);
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    HttpResponse::build(crate::server::status_code(status))
        .content_type("application/json; charset=utf-8")
        .insert_header(("Cache-Control", "no-store, no-cache"))
        .body(body.to_string())
}

fn missing(ctx: &Ctx<'_>, param: &str) -> HttpResponse {
    aad_error(
        ctx,
        400,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{param}'."),
    )
}

/// Client id and secret from HTTP Basic (`base64(urlencode(id):urlencode(secret))`).
fn basic_credentials(ctx: &Ctx<'_>) -> Option<(String, String)> {
    let h = ctx.header("authorization")?;
    let (scheme, value) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(b64std_decode(value.trim())?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

pub(crate) fn token_endpoint(ctx: &Ctx<'_>, tenant: &str, body: &[u8]) -> HttpResponse {
    let cfg = &ctx.shared.config;
    if ctx.req.method() != Method::POST {
        return aad_error(
            ctx,
            400,
            "invalid_request",
            900_561,
            "The endpoint only accepts POST requests. Received a GET request.",
        );
    }
    let known_tenant = tenant.eq_ignore_ascii_case(&cfg.tenant_id)
        || tenant.eq_ignore_ascii_case(&cfg.tenant_domain);
    if !known_tenant {
        let dns_like = tenant.contains('.')
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let wellknown = ["common", "organizations", "consumers"]
            .iter()
            .any(|w| tenant.eq_ignore_ascii_case(w));
        return if is_guid(tenant) || dns_like || wellknown {
            aad_error(
                ctx,
                400,
                "invalid_request",
                90_002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            )
        } else {
            aad_error(
                ctx,
                400,
                "invalid_request",
                900_023,
                &format!(
                    "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."
                ),
            )
        };
    }
    let is_form = ctx.header("content-type").is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let form: HashMap<String, String> = if is_form {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    } else {
        HashMap::new()
    };
    let Some(grant) = form.get("grant_type") else {
        return missing(ctx, "grant_type");
    };
    if grant != "client_credentials" {
        return aad_error(
            ctx,
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let basic = basic_credentials(ctx);
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.clone())
        .or_else(|| form.get("client_id").cloned());
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return missing(ctx, "client_id");
    };
    if !client_id.eq_ignore_ascii_case(&cfg.client_id) {
        return aad_error(
            ctx,
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                cfg.tenant_domain
            ),
        );
    }
    if form.contains_key("client_assertion") && basic.is_none() {
        return aad_error(
            ctx,
            401,
            "invalid_client",
            700_027,
            "Client assertion failed signature validation. (The emulator does not support certificate credentials.)",
        );
    }
    let secret = basic
        .as_ref()
        .map(|(_, s)| s.clone())
        .or_else(|| form.get("client_secret").cloned());
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return aad_error(
            ctx,
            401,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if secret != cfg.client_secret {
        return aad_error(
            ctx,
            401,
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                cfg.client_id
            ),
        );
    }
    let Some(scope) = form
        .get("scope")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    else {
        return missing(ctx, "scope");
    };
    let Some(resource) = scope.strip_suffix("/.default") else {
        return aad_error(
            ctx,
            400,
            "invalid_scope",
            1_002_012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let resource = resource.trim_end_matches('/');
    let accepted = [
        GRAPH_RESOURCE,
        GRAPH_APP_ID,
        ctx.shared.base_url.as_str(),
        ctx.origin.as_str(),
    ];
    if resource.contains(char::is_whitespace)
        || !accepted.iter().any(|a| a.eq_ignore_ascii_case(resource))
    {
        return aad_error(
            ctx,
            400,
            "invalid_scope",
            70_011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    }
    issue(ctx, resource)
}

fn issue(ctx: &Ctx<'_>, resource: &str) -> HttpResponse {
    let cfg = &ctx.shared.config;
    let modes = ctx.shared.modes();
    let lifetime = modes.token_expires_in.unwrap_or(cfg.token_lifetime_secs);
    let now = ctx.now;
    let exp = now.saturating_add(lifetime);
    let roles: Vec<String> = if modes.no_roles {
        Vec::new()
    } else {
        ROLES.iter().map(|r| r.to_string()).collect()
    };
    let aud = if resource.eq_ignore_ascii_case(GRAPH_APP_ID) {
        GRAPH_RESOURCE.to_string()
    } else {
        resource.to_string()
    };
    let oid = crate::util::format_guid(
        crate::util::keyed_hash("oid", cfg.client_id.as_bytes()),
        crate::util::keyed_hash("oid2", cfg.client_id.as_bytes()),
    );
    let mut claims = json!({
        "aud": aud,
        "iss": format!("https://sts.windows.net/{}/", cfg.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "aio": "E2RgYJj/emulated",
        "app_displayname": "Roster (graph-emulator)",
        "appid": cfg.client_id,
        "appidacr": "1",
        "idp": format!("https://sts.windows.net/{}/", cfg.tenant_id),
        "idtyp": "app",
        "oid": oid,
        "rh": "0.AAAA.emulated.",
        "sub": oid,
        "tenant_region_scope": "EU",
        "tid": cfg.tenant_id,
        "uti": new_guid().replace('-', ""),
        "ver": "1.0",
        "xms_tcdt": now.saturating_sub(86_400 * 400),
    });
    if !roles.is_empty()
        && let Some(obj) = claims.as_object_mut()
    {
        obj.insert("roles".into(), json!(roles));
    }
    let header = json!({ "typ": "JWT", "alg": "none" });
    let token = format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    {
        let mut tokens = ctx.shared.tokens();
        if tokens.len() > 10_000 {
            tokens.retain(|_, t| t.exp > now);
        }
        tokens.insert(token.clone(), IssuedToken { exp, roles });
    }
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .insert_header(("Cache-Control", "no-store, no-cache"))
        .body(
            json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            })
            .to_string(),
        )
}
