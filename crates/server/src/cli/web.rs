//! `waybill web`: what an administrator needs for the web workbench's sign-in.

use std::io::BufRead;

use clap::Subcommand;

/// `waybill web …`.
#[derive(Debug, Subcommand)]
pub(crate) enum WebCommand {
    /// Reads a password from standard input (one line) and prints its argon2id hash, for
    /// `password_hash` of a `[[people]]` entry in the identities file. The password
    /// itself is never stored.
    HashPassword,
}

pub(crate) fn run(command: WebCommand) -> anyhow::Result<()> {
    match command {
        WebCommand::HashPassword => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\n', '\r']);
            if password.chars().count() < 12 {
                anyhow::bail!(
                    "the password is shorter than 12 characters; choose a longer one (a passphrase of a few words is good)"
                );
            }
            println!("{}", waybill_control::auth::hash_password(password));
            Ok(())
        }
    }
}
