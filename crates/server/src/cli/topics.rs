//! `waybill topics plan|apply`: Waybill's Kafka topics.

use clap::Subcommand;
#[cfg(feature = "kafka")]
use figment::Figment;

use super::Common;

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Compare the topics on the brokers with the plan (partitions, replication,
    /// retention); exits non-zero if a topic has the wrong partition count.
    Plan {
        #[command(flatten)]
        common: Common,
    },
    /// Create the missing topics as planned (existing ones are left alone).
    Apply {
        #[command(flatten)]
        common: Common,
    },
}

/// `waybill topics plan|apply`.
#[cfg(feature = "kafka")]
pub(crate) fn run(command: TopicsCommand) -> anyhow::Result<()> {
    use waybill_server::backend::{self, kafka};
    let (common, apply) = match command {
        TopicsCommand::Plan { common } => (common, false),
        TopicsCommand::Apply { common } => (common, true),
    };
    let cfg = common.load(Figment::new())?;
    if cfg.kafka.is_none() {
        anyhow::bail!(
            "the config has no [kafka] section: the embedded log creates its topics itself. Add [kafka] with \
             bootstrap.servers (or WAYBILL_KAFKA__BOOTSTRAP__SERVERS) to plan topics on a broker"
        );
    }
    let log = kafka::connect(&cfg, kafka::Retry::Once)?;
    let checked = backend::check(&backend::plan(&cfg), |t| Ok(log.topic_partitions(t)?))?;
    print!("{}", backend::render(&checked));
    if let Some(e) = backend::mismatch_error(&checked, cfg.partitions) {
        return Err(e);
    }
    let missing = checked.iter().filter(|(_, s)| *s == backend::TopicState::Missing).count();
    if apply {
        let created = kafka::create_missing(&log, &checked)?;
        println!("created {created} topic(s); {} already existed", checked.len() - created);
    } else if missing > 0 {
        println!("{missing} topic(s) missing; `waybill topics apply` creates them");
    } else {
        println!("every topic exists with {} partitions", cfg.partitions);
    }
    Ok(())
}

#[cfg(not(feature = "kafka"))]
pub(crate) fn run(_: TopicsCommand) -> anyhow::Result<()> {
    anyhow::bail!("this waybill was built without Kafka support (cargo feature `kafka`)")
}
