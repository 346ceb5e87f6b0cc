//! The demo's people: one sign-in to the web workbench for each role, with a password
//! made for this run only, added as `[[people]]` (argon2id hashes) to the identities
//! file the control plane reads. The demo prints them beside the workbench's address.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use waybill_control::Role;

/// Who can sign in to the demo's workbench, and what they may do there.
const PEOPLE: [(&str, Role, &str); 6] = [
    ("vera", Role::Viewer, "reads everything, changes nothing"),
    ("otto", Role::Operator, "retries, resolves and replays exceptions"),
    ("ada", Role::Approver, "approves held postings up to the approver's limit"),
    ("alan", Role::Approver, "a second approver, for four-eyes"),
    ("sam", Role::SeniorApprover, "approves above the approver's limit"),
    ("root", Role::Admin, "everything"),
];

/// The demo's sign-ins for one run.
#[derive(Debug, Clone)]
pub struct People {
    /// Identity, role, password, what the role does.
    pub sign_ins: Vec<(String, Role, String, &'static str)>,
}

impl People {
    /// Passwords made for this run.
    pub fn generate() -> People {
        let mut rng = fastrand::Rng::new();
        let sign_ins = PEOPLE
            .iter()
            .map(|(identity, role, what)| {
                let password: String = (0..12).map(|_| rng.alphanumeric()).collect();
                (identity.to_string(), *role, password, *what)
            })
            .collect();
        People { sign_ins }
    }

    /// Writes the identities file `dir/identities.toml`: `existing` (the producers'
    /// tokens, if any) followed by the people. Returns its path.
    pub fn write(&self, existing: Option<&Path>, dir: &Path) -> anyhow::Result<PathBuf> {
        let mut text = match existing {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read the demo's tokens file {}: {e}", p.display()))?,
            None => String::new(),
        };
        text.push_str("\n# The demo's people: sign-ins to the web workbench for this run.\n");
        for (identity, role, password, _) in &self.sign_ins {
            let hash = waybill_control::auth::hash_password(password);
            let _ =
                write!(text, "[[people]]\nidentity = {identity:?}\nrole = \"{role}\"\npassword_hash = {hash:?}\n\n");
        }
        let path = dir.join("identities.toml");
        super::stage::write_secret(&path, &text)?;
        Ok(path)
    }

    /// Lines for the start-up banner.
    pub fn describe(&self) -> Vec<String> {
        self.sign_ins
            .iter()
            .map(|(identity, role, password, what)| format!("{:<16} {identity} / {password}   ({what})", role.as_str()))
            .collect()
    }
}
