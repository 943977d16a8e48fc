//! The emulated tenant: starting the `graph-emulator` binary, the bare paging baseline, and the 1 % changes
//! applied before a delta round.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use graph_emulator::{MemberKind, Mutation, Truth};
use serde_json::{Value, json};

use crate::procs::{self, Proc};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "bench-client-secret~Roster.1";
pub const EXT_APP: &str = "b7d8e648520f41d3b9c0fdeb91768a0a";

pub struct Tenant {
    pub proc: Proc,
    pub base: String,
    pub users: usize,
    http: reqwest::Client,
}

impl Tenant {
    pub fn start(
        users: usize,
        groups: usize,
        memberships: usize,
        seed: u64,
        log: &Path,
    ) -> anyhow::Result<Tenant> {
        let mut cmd = Command::new(procs::release_bin("graph-emulator")?);
        cmd.args(["--bind", "127.0.0.1:0"])
            .args(["--users", &users.to_string()])
            .args(["--groups", &groups.to_string()])
            .args(["--memberships", &memberships.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(["--tenant-id", TENANT, "--client-id", CLIENT])
            .args(["--client-secret", SECRET, "--extension-app-id", EXT_APP]);
        let (proc, line) = procs::spawn("graph-emulator", cmd, log, true)?;
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("unexpected emulator banner: {line}"))?
            .to_owned();
        Ok(Tenant {
            proc,
            base,
            users,
            http: reqwest::Client::new(),
        })
    }

    /// The users `$select` Roster sends with the bench's two custom attributes (see `entra_form`).
    pub fn user_select() -> String {
        let mut s: Vec<String> = roster::settings::model::BUILTIN_USER_PROPERTIES
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        s.push("onPremisesExtensionAttributes".into());
        s.push(format!("extension_{EXT_APP}_costCenter"));
        s.dedup();
        s.join(",")
    }

    async fn token(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let resp: Value = http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("scope", &format!("{}/.default", self.base)),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        resp["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token")
    }

    /// Follows `@odata.nextLink` from `first` until a page has none; parses every page into a
    /// `serde_json::Value` and drops it. Returns (pages, objects, bytes).
    async fn page_all(
        &self,
        http: &reqwest::Client,
        token: &str,
        first: String,
    ) -> anyhow::Result<(usize, usize, usize)> {
        let (mut pages, mut objects, mut bytes) = (0, 0, 0);
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let body = http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            bytes += body.len();
            let v: Value = serde_json::from_slice(&body)?;
            pages += 1;
            objects += v["value"].as_array().map_or(0, Vec::len);
            next = v["@odata.nextLink"].as_str().map(str::to_owned);
        }
        Ok((pages, objects, bytes))
    }

    /// One bare paging round: `/users?$top=999` then the groups delta with members. With `users_delta`,
    /// the users part pages `/users/delta` (the emulator's delta page size, as Roster's sync does).
    pub async fn baseline_once(&self, users_delta: bool) -> anyhow::Result<Value> {
        let select = Self::user_select();
        let users_url = if users_delta {
            format!("{}/v1.0/users/delta?$select={select}", self.base)
        } else {
            format!("{}/v1.0/users?$top=999&$select={select}", self.base)
        };
        let groups_url = format!(
            "{}/v1.0/groups/delta?$select={}",
            self.base,
            roster::sync::service::GROUP_SELECT
        );
        self.page_users_then_groups(users_url, groups_url).await
    }

    /// Bare paging of a delta round: the users then the groups delta link a full round stored, each page
    /// parsed and dropped, as `baseline_once` does. Paging a link changes nothing in the emulator.
    pub async fn delta_paging(&self, users_link: &str, groups_link: &str) -> anyhow::Result<Value> {
        self.page_users_then_groups(users_link.to_owned(), groups_link.to_owned())
            .await
    }

    /// Pages `users_url` then `groups_url` to their ends with one client (token included in the time).
    async fn page_users_then_groups(
        &self,
        users_url: String,
        groups_url: String,
    ) -> anyhow::Result<Value> {
        let http = reqwest::Client::new();
        let start = Instant::now();
        let token = self.token(&http).await?;
        let (up, uo, ub) = self.page_all(&http, &token, users_url).await?;
        let users_s = start.elapsed().as_secs_f64();
        let (gp, go, gb) = self.page_all(&http, &token, groups_url).await?;
        let total = start.elapsed().as_secs_f64();
        Ok(json!({
            "seconds": total,
            "users_seconds": users_s,
            "groups_seconds": total - users_s,
            "user_pages": up, "users": uo, "user_bytes": ub,
            "group_pages": gp, "groups": go, "group_bytes": gb,
        }))
    }

    pub async fn truth(&self) -> anyhow::Result<Truth> {
        Ok(self
            .http
            .get(format!("{}/_emulator/truth", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn mutate(&self, list: &[Mutation]) -> anyhow::Result<()> {
        for chunk in list.chunks(1000) {
            let resp = self
                .http
                .post(format!("{}/_emulator/mutations", self.base))
                .json(chunk)
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("mutations refused: {}", resp.text().await?);
            }
        }
        Ok(())
    }
}

/// A small deterministic generator (xorshift64*), so every run changes the same objects.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r % (n.max(1) as u64)) as usize
    }
}

/// 1 % of the users get a new job title; 1 % of the memberships change (half removed, half added).
pub fn one_percent(truth: &Truth, round: u64) -> (Vec<Mutation>, usize, usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ round.wrapping_mul(0xA24B_AED4_963E_E407));
    let mut out = Vec::new();
    let n_users = (truth.users.len() / 100).max(1);
    let mut picked = HashSet::new();
    while picked.len() < n_users.min(truth.users.len()) {
        picked.insert(rng.below(truth.users.len()));
    }
    for (i, idx) in picked.iter().enumerate() {
        out.push(Mutation::UpdateUser {
            id: truth.users[*idx].id.clone(),
            patch: json!({ "jobTitle": format!("Bench round {round} #{i}") }),
        });
    }
    let user_members: Vec<&(String, MemberKind, String)> = truth
        .memberships
        .iter()
        .filter(|m| m.1 == MemberKind::User)
        .collect();
    let n_members = (truth.memberships.len() / 100).max(2);
    let mut existing: HashSet<(&str, &str)> = truth
        .memberships
        .iter()
        .map(|(g, _, m)| (g.as_str(), m.as_str()))
        .collect();
    let mut removed = HashSet::new();
    while removed.len() < (n_members / 2).min(user_members.len()) {
        removed.insert(rng.below(user_members.len()));
    }
    for idx in &removed {
        let (g, _, m) = user_members[*idx];
        out.push(Mutation::RemoveMember {
            group_id: g.clone(),
            member_id: m.clone(),
        });
    }
    let mut added = 0;
    while added < n_members / 2 && !truth.groups.is_empty() {
        let g = &truth.groups[rng.below(truth.groups.len())].id;
        let u = &truth.users[rng.below(truth.users.len())].id;
        if existing.insert((g.as_str(), u.as_str())) {
            out.push(Mutation::AddMember {
                group_id: g.clone(),
                kind: MemberKind::User,
                member_id: u.clone(),
            });
            added += 1;
        }
    }
    (out, n_users, removed.len() + added)
}
