//! `waybill schemas check|push`: the schema catalog against a deployment or a company
//! registry.

use std::path::PathBuf;

use clap::Subcommand;

use super::render::{Output, json};

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasCommand {
    /// What deploying this build changes in the schemas a deployment knows: new
    /// subjects, new versions, and incompatible edits at each subject's level (exits
    /// non-zero on any incompatible change).
    Check {
        /// The deployment: a Confluent-compatible registry URL (`http://registry:8081`,
        /// or a running Waybill's `registry.listen`), or the `schemas/` folder of the
        /// release it runs.
        #[arg(long)]
        against: String,
        /// Registry credentials: a file whose first line is `user:password` (basic
        /// auth) or `Bearer <token>`.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// `table` (the report as text) or `json` (`changes`, `unchanged`, `safe`).
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Register the catalog in a Confluent-compatible registry (Confluent, Karapace,
    /// Apicurio's Confluent API): each subject's compatibility level, then every version
    /// in order; prints the ids it assigned. Refuses, naming the subject, when the
    /// registry holds something incompatible. Then start Waybill with `[registry] url`.
    Push {
        /// The registry URL.
        #[arg(long)]
        registry: String,
        /// Registry credentials: a file whose first line is `user:password` (basic
        /// auth) or `Bearer <token>`.
        #[arg(long)]
        credentials: Option<PathBuf>,
    },
}

pub(crate) fn run(command: SchemasCommand) -> anyhow::Result<()> {
    match command {
        SchemasCommand::Push { registry, credentials } => {
            let pushed = waybill_server::schemas::push(&registry, credentials.as_deref())?;
            print!("{pushed}");
            Ok(())
        }
        SchemasCommand::Check { against, credentials, output } => {
            let report = waybill_server::schemas::check(&against, credentials.as_deref())?;
            match output {
                Output::Table => print!("{report}"),
                Output::Json => json(&serde_json::json!({
                    "changes": report.changes,
                    "unchanged": report.unchanged,
                    "safe": !report.breaks(),
                }))?,
            }
            if report.breaks() {
                anyhow::bail!("incompatible schema changes against {against}; see the lines marked INCOMPATIBLE");
            }
            Ok(())
        }
    }
}
