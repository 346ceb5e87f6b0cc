//! `waybill approvals list|show|approve|reject|audit`: held postings on a running server.

use clap::Subcommand;
use waybill_control::proto;

use super::render::{Output, age, json, money, table};
use super::{Remote, call};

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// Held postings, oldest first.
    List {
        #[command(flatten)]
        remote: Remote,
        /// `held`, `approved`, `rejected` or `all`.
        #[arg(long, default_value = "held")]
        state: String,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// Only postings of this legal entity (its code in `[entities]`).
        #[arg(long)]
        entity: Option<String>,
        /// Only postings with a hold reason containing this text.
        #[arg(long)]
        reason: Option<String>,
        /// Only this document: `invoice`, `credit-note` or `vendor-bill`.
        #[arg(long)]
        document: Option<String>,
        /// Only postings held at least this many seconds.
        #[arg(long, default_value_t = 0)]
        min_age: i64,
        /// Only postings of at least this amount, in minor units (`1250000` is 12,500.00).
        #[arg(long, default_value_t = 0)]
        min_amount: i64,
        /// Only postings of at most this amount, in minor units.
        #[arg(long, default_value_t = 0)]
        max_amount: i64,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Page token printed by the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// One posting with its evidence.
    Show {
        /// Posting id (`inv:SHP-1`).
        posting_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Approve a held posting.
    Approve {
        /// Posting id.
        posting_id: String,
        /// The version you reviewed (from `show`).
        #[arg(long)]
        version: i64,
        /// Note.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Reject a held posting (nothing is posted).
    Reject {
        /// Posting id.
        posting_id: String,
        /// The version you reviewed (from `show`).
        #[arg(long)]
        version: i64,
        /// Why (required).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Who approved or rejected what, newest first.
    Audit {
        #[command(flatten)]
        remote: Remote,
        /// Only actions on this posting, exception or saga.
        #[arg(long)]
        posting: Option<String>,
        /// Only this identity.
        #[arg(long)]
        actor: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub(crate) fn print_posting(p: &proto::Posting) {
    println!("posting      {} ({}, {} {})", p.posting_id, p.document, p.business_key, p.state);
    println!("order        {}  customer {}", p.order_ref, p.customer);
    println!("amount       {} {}", p.amount, p.currency);
    if !p.entity.is_empty() {
        println!("entity       {}  (its approval limits apply)", p.entity);
    }
    println!("version      {}   (approve with --version {})", p.version, p.version);
    println!(
        "requested by {}  held {} ago{}",
        p.requested_by,
        age(p.held_at_us),
        if p.escalated { "  ESCALATED" } else { "" }
    );
    for r in &p.reasons {
        println!("reason       {r}");
    }
    if !p.decided_by.is_empty() {
        println!("decided by   {} ({}): {}", p.decided_by, p.decided_role, p.decision_reason);
    }
    for r in &p.refusals {
        println!("refused      {r}");
    }
}

pub(crate) fn run(command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List {
            remote,
            state,
            customer,
            entity,
            reason,
            document,
            min_age,
            min_amount,
            max_amount,
            page_size,
            page_token,
        } => {
            let req = proto::ListHeldPostingsRequest {
                state,
                customer: customer.unwrap_or_default(),
                reason_contains: reason.unwrap_or_default(),
                min_age_seconds: min_age,
                document: document.unwrap_or_default(),
                min_amount_minor: min_amount,
                max_amount_minor: max_amount,
                page_size,
                page_token: page_token.unwrap_or_default(),
                entity: entity.unwrap_or_default(),
            };
            let resp = call(&remote, async |mut c| Ok(c.approvals.list_held_postings(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                return json(&resp);
            }
            // The entity column only where entities are configured.
            let entities = resp.postings.iter().any(|p| !p.entity.is_empty());
            let rows: Vec<Vec<String>> = resp
                .postings
                .iter()
                .map(|p| {
                    let mut row = vec![p.posting_id.clone(), p.order_ref.clone()];
                    if entities {
                        row.push(p.entity.clone());
                    }
                    row.extend([
                        p.customer.clone(),
                        format!("{} {}", p.amount, p.currency),
                        p.version.to_string(),
                        p.state.clone(),
                        age(p.held_at_us),
                        p.reasons.join("; "),
                    ]);
                    row
                })
                .collect();
            let mut header = vec!["POSTING", "ORDER"];
            if entities {
                header.push("ENTITY");
            }
            header.extend(["CUSTOMER", "AMOUNT", "VERSION", "STATE", "AGE", "REASONS"]);
            print!("{}", table(&header, &rows));
            println!("{} postings", rows.len());
            if !resp.next_page_token.is_empty() {
                println!("more: --page-token {}", resp.next_page_token);
            }
            Ok(())
        }
        ApprovalsCommand::Show { posting_id, remote } => {
            let req = proto::GetPostingRequest { posting_id };
            let resp = call(&remote, async |mut c| Ok(c.approvals.get_posting(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                return json(&resp);
            }
            if let Some(p) = &resp.posting {
                print_posting(p);
            }
            println!("\norder lines");
            let rows: Vec<Vec<String>> = resp
                .order_lines
                .iter()
                .map(|l| {
                    vec![
                        l.line_no.to_string(),
                        l.sku.clone(),
                        l.ordered.clone(),
                        l.shipped.clone(),
                        money(l.unit_price_minor),
                        l.tax_code.clone(),
                    ]
                })
                .collect();
            print!("{}", table(&["LINE", "SKU", "ORDERED", "SHIPPED", "PRICE", "TAX"], &rows));
            println!("\ndocument lines (total {})", money(resp.document_total_minor));
            let rows: Vec<Vec<String>> = resp
                .document_lines
                .iter()
                .map(|l| {
                    vec![
                        l.line_no.to_string(),
                        l.sku.clone(),
                        l.quantity.clone(),
                        money(l.unit_price_minor),
                        l.tax_code.clone(),
                        money(l.total_minor),
                    ]
                })
                .collect();
            print!("{}", table(&["LINE", "SKU", "QTY", "PRICE", "TAX", "TOTAL"], &rows));
            Ok(())
        }
        ApprovalsCommand::Approve { posting_id, version, reason, remote } => {
            let req = proto::DecisionRequest { posting_id, expected_version: version, reason };
            let resp = call(&remote, async |mut c| Ok(c.approvals.approve(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                return json(&resp);
            }
            println!("{}", resp.message);
            Ok(())
        }
        ApprovalsCommand::Reject { posting_id, version, reason, remote } => {
            let req = proto::DecisionRequest { posting_id, expected_version: version, reason };
            let resp = call(&remote, async |mut c| Ok(c.approvals.reject(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                return json(&resp);
            }
            println!("{}", resp.message);
            Ok(())
        }
        ApprovalsCommand::Audit { remote, posting, actor, limit } => {
            let req = proto::ListAuditRequest {
                posting_id: posting.unwrap_or_default(),
                actor: actor.unwrap_or_default(),
                limit,
            };
            let resp = call(&remote, async |mut c| Ok(c.audit.list_audit(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                return json(&resp);
            }
            let rows: Vec<Vec<String>> = resp
                .entries
                .iter()
                .map(|e| {
                    vec![
                        age(e.at_us),
                        e.actor.clone(),
                        e.role.clone(),
                        e.peer.clone(),
                        e.action.clone(),
                        e.posting_id.clone(),
                        if e.expected_version > 0 { format!("v{}", e.expected_version) } else { "-".into() },
                        e.outcome.clone(),
                        e.detail.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["AGO", "ACTOR", "ROLE", "PEER", "ACTION", "SUBJECT", "VERSION", "OUTCOME", "DETAIL"], &rows)
            );
            Ok(())
        }
    }
}
