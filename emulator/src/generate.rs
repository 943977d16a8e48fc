//! Deterministic directory generation from a seed (names, departments, groups, skewed
//! memberships and a few nested groups).

use crate::Config;
use crate::model::{Directory, Id};
use crate::types::{Group, MemberKind, User};
use crate::util::SplitMix;
use serde_json::json;
use std::collections::HashSet;

const FIRST: &[&str] = &[
    "Adele",
    "Alex",
    "Allan",
    "Amara",
    "Ana",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Christie",
    "Claire",
    "Daniel",
    "Debra",
    "Diego",
    "Elena",
    "Emily",
    "Enrico",
    "Fatima",
    "Grady",
    "Hannah",
    "Henrietta",
    "Hiro",
    "Irvin",
    "Isaiah",
    "Jakob",
    "Johanna",
    "Joni",
    "Jorge",
    "Julia",
    "Kenji",
    "Lee",
    "Leila",
    "Lidia",
    "Lynne",
    "Maria",
    "Megan",
    "Miriam",
    "Nestor",
    "Nina",
    "Noah",
    "Olga",
    "Omar",
    "Patti",
    "Pradeep",
    "Priya",
    "Rafael",
    "Raul",
    "Sakura",
    "Samira",
    "Sofia",
    "Stefan",
    "Tomas",
    "Ursula",
    "Valentina",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
];

const LAST: &[&str] = &[
    "Adams",
    "Ahmed",
    "Alvarez",
    "Bauer",
    "Becker",
    "Brown",
    "Castillo",
    "Chen",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fernandez",
    "Fischer",
    "Garcia",
    "Gupta",
    "Hansen",
    "Hernandez",
    "Ito",
    "Jansen",
    "Johnson",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Muller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Petrov",
    "Quinn",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Smith",
    "Sorensen",
    "Tanaka",
    "Thomas",
    "Vargas",
    "Wagner",
    "Wang",
    "Weber",
    "Williams",
    "Wilson",
    "Yamamoto",
    "Zhang",
];

const DEPARTMENTS: &[&str] = &[
    "Sales",
    "Marketing",
    "Engineering",
    "Finance",
    "Human Resources",
    "Legal",
    "Operations",
    "Support",
    "Research",
    "IT",
    "Procurement",
    "Facilities",
];

const TITLES: &[&str] = &[
    "Account Executive",
    "Marketing Specialist",
    "Software Engineer",
    "Senior Software Engineer",
    "Financial Analyst",
    "HR Generalist",
    "Counsel",
    "Operations Manager",
    "Support Engineer",
    "Research Scientist",
    "IT Administrator",
    "Buyer",
    "Facilities Coordinator",
    "Product Manager",
    "Director",
    "Team Lead",
];

const GROUP_SUFFIX: &[&str] = &[
    "Team",
    "Managers",
    "Leads",
    "Project Alpha",
    "Project Beta",
    "Devices",
    "Admins",
    "Contractors",
    "Interns",
    "Champions",
    "Readers",
    "Approvers",
];

const WORKER_TYPES: &[&str] = &[
    "Employee",
    "Employee",
    "Employee",
    "Contractor",
    "Intern",
    "Vendor",
];

fn company(domain: &str) -> String {
    let label = domain.split('.').next().unwrap_or("contoso");
    let mut c = label.chars();
    match c.next() {
        Some(f) => format!("{}{} Ltd", f.to_ascii_uppercase(), c.as_str()),
        None => "Contoso Ltd".to_string(),
    }
}

fn upn_part(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

pub(crate) fn generate(config: &Config, now_secs: u64) -> Directory {
    let mut rng = SplitMix::new(config.seed);
    let mut dir = Directory::default();
    let domain = &config.tenant_domain;
    let company = company(domain);
    let cost_center = format!("extension_{}_costCenter", config.extension_app_id);
    let three_years = 3 * 365 * 86_400;

    let mut user_ids: Vec<Id> = Vec::with_capacity(config.users);
    for i in 0..config.users {
        let id = rng.guid();
        let n = i + 1;
        let service = rng.chance(0.01);
        let (given, surname, display, upn) = if service {
            let word = rng.pick(&["backup", "scanner", "kiosk", "sync", "reports"]);
            (
                None,
                None,
                format!("Service {word} {n}"),
                format!("svc.{word}{n}@{domain}"),
            )
        } else {
            let first = *rng.pick(FIRST);
            let last = *rng.pick(LAST);
            (
                Some(first.to_string()),
                Some(last.to_string()),
                format!("{first} {last}"),
                format!("{}.{}{n}@{domain}", upn_part(first), upn_part(last)),
            )
        };
        let r = rng.unit();
        let mail = if service || r < 0.06 {
            None
        } else if r < 0.09 {
            Some(format!(
                "{}@mail.{domain}",
                upn.split('@').next().unwrap_or("user")
            ))
        } else {
            Some(upn.clone())
        };
        let dept_idx = rng.below(DEPARTMENTS.len());
        let mut attrs: [Option<String>; 15] = Default::default();
        if rng.chance(0.5) {
            attrs[6] = Some(rng.pick(WORKER_TYPES).to_string());
        }
        if rng.chance(0.2) {
            attrs[0] = Some(format!("CC{:04}", 1000 + dept_idx * 10 + rng.below(10)));
        }
        if rng.chance(0.05) {
            attrs[14] = Some("NoMDM".to_string());
        }
        let mut extensions = std::collections::BTreeMap::new();
        if rng.chance(0.5) {
            extensions.insert(
                cost_center.clone(),
                json!(format!("CC-{:04}", 1000 + dept_idx * 10 + rng.below(10))),
            );
        }
        let user = User {
            id,
            user_principal_name: upn,
            mail,
            given_name: given,
            surname,
            display_name: display,
            job_title: (!service && rng.chance(0.9)).then(|| rng.pick(TITLES).to_string()),
            department: (!service && rng.chance(0.92)).then(|| DEPARTMENTS[dept_idx].to_string()),
            company_name: rng.chance(0.85).then(|| company.clone()),
            employee_id: (!service && rng.chance(0.8)).then(|| format!("{:06}", 100_000 + n)),
            account_enabled: !rng.chance(0.05),
            mobile_phone: rng
                .chance(0.4)
                .then(|| format!("+1 555 01{:02} {:04}", rng.below(100), rng.below(10_000))),
            on_premises_extension_attributes: attrs,
            extensions,
        };
        let created = now_secs.saturating_sub(rng.below(three_years) as u64 + 86_400);
        user_ids.push(dir.insert_user(user, created));
    }

    let mut group_ids: Vec<Id> = Vec::with_capacity(config.groups);
    let mut names: HashSet<String> = HashSet::new();
    for g in 0..config.groups {
        let id = rng.guid();
        let mut name = if g == 0 {
            "All Staff".to_string()
        } else {
            format!("{} {}", rng.pick(DEPARTMENTS), rng.pick(GROUP_SUFFIX))
        };
        if !names.insert(name.clone()) {
            name = format!("{name} {}", g + 1);
            names.insert(name.clone());
        }
        let nickname = upn_part(&name);
        let r = rng.unit();
        let group = if r < 0.4 {
            Group {
                id,
                description: Some(format!("Microsoft 365 group for {name}")),
                mail: Some(format!("{nickname}@{domain}")),
                mail_enabled: true,
                security_enabled: false,
                group_types: vec!["Unified".to_string()],
                display_name: name,
            }
        } else if r < 0.45 {
            Group {
                id,
                description: None,
                mail: Some(format!("{nickname}@{domain}")),
                mail_enabled: true,
                security_enabled: true,
                group_types: Vec::new(),
                display_name: name,
            }
        } else {
            Group {
                id,
                description: rng.chance(0.5).then(|| format!("Security group {name}")),
                mail: None,
                mail_enabled: false,
                security_enabled: true,
                group_types: Vec::new(),
                display_name: name,
            }
        };
        let created = now_secs.saturating_sub(rng.below(three_years) as u64 + 86_400);
        group_ids.push(dir.insert_group(group, created));
    }

    let users = user_ids.len();
    let groups = group_ids.len();
    if users > 0 && groups > 0 {
        let target = config.memberships.min(users.saturating_mul(groups));
        let mut seen: HashSet<u64> = HashSet::with_capacity(target);
        let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(target);
        let max_attempts = target.saturating_mul(20).max(1000);
        let mut attempts = 0;
        while pairs.len() < target && attempts < max_attempts {
            attempts += 1;
            // Skewed towards low group indices: a few big groups, many small ones.
            let u = rng.unit();
            let g = ((u * u) * groups as f64) as usize;
            let g = g.min(groups - 1);
            let m = rng.below(users);
            if seen.insert((g as u64) * users as u64 + m as u64) {
                pairs.push((g, m));
            }
        }
        // Saturated corner cases: fill the rest deterministically.
        'fill: for g in 0..groups {
            for m in 0..users {
                if pairs.len() >= target {
                    break 'fill;
                }
                if seen.insert((g as u64) * users as u64 + m as u64) {
                    pairs.push((g, m));
                }
            }
        }
        for (g, m) in pairs {
            dir.link(&group_ids[g], MemberKind::User, &user_ids[m]);
        }
    }

    if groups >= 4 {
        let nested = (2 + groups / 200).min(groups / 2).min(25);
        let mut made = 0;
        let mut tries = 0;
        while made < nested && tries < nested * 20 {
            tries += 1;
            let parent = rng.below(groups - 1);
            let child = parent + 1 + rng.below(groups - parent - 1);
            if dir.link(&group_ids[parent], MemberKind::Group, &group_ids[child]) {
                made += 1;
            }
        }
    }
    dir
}
