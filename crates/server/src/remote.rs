//! The control-plane subcommands of `waybill` (approvals, exceptions, orders, sagas,
//! trace): gRPC calls to a running server and their rendering as tables or JSON.

use std::fmt::Write as _;

use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;

use super::{ApprovalsCommand, DlqCommand, ExceptionsCommand, OrderCommand, Output, Remote, SagaCommand};

fn call<T>(remote: &Remote, f: impl AsyncFnOnce(Clients) -> Result<T, tonic::Status>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let opts = ClientOptions {
            server: remote.server.clone(),
            token: remote.token.clone(),
            ca_cert: remote.ca_cert.clone(),
            client_cert: remote.client_cert.clone(),
            client_key: remote.client_key.clone(),
        };
        let clients = client::connect(&opts).await?;
        f(clients).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))
    })
}

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A plain table: columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        let _ = writeln!(out, "{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
    line(w.iter().map(|n| "-".repeat(*n)).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

fn money(minor: i64) -> String {
    waybill_domain::Money(minor).to_string()
}

fn age(at_us: i64) -> String {
    if at_us == 0 {
        return "-".into();
    }
    let secs = (waybill_domain::Timestamp::now().0 - at_us).max(0) / 1_000_000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn print_posting(p: &proto::Posting) {
    println!("posting      {} ({}, {} {})", p.posting_id, p.document, p.business_key, p.state);
    println!("order        {}  customer {}", p.order_ref, p.customer);
    println!("amount       {} {}", p.amount, p.currency);
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

pub(super) fn approvals(command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List { remote, state, customer, reason, min_age, page_size, page_token } => {
            let req = proto::ListHeldPostingsRequest {
                state,
                customer: customer.unwrap_or_default(),
                reason_contains: reason.unwrap_or_default(),
                min_age_seconds: min_age,
                document: String::new(),
                page_size,
                page_token: page_token.unwrap_or_default(),
            };
            let resp = call(&remote, async |mut c| Ok(c.approvals.list_held_postings(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                return json(&resp);
            }
            let rows: Vec<Vec<String>> = resp
                .postings
                .iter()
                .map(|p| {
                    vec![
                        p.posting_id.clone(),
                        p.order_ref.clone(),
                        p.customer.clone(),
                        format!("{} {}", p.amount, p.currency),
                        p.version.to_string(),
                        p.state.clone(),
                        age(p.held_at_us),
                        p.reasons.join("; "),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["POSTING", "ORDER", "CUSTOMER", "AMOUNT", "VERSION", "STATE", "AGE", "REASONS"], &rows)
            );
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

pub(super) fn exceptions(command: ExceptionsCommand) -> anyhow::Result<()> {
    let (remote, category, open, min_age, limit) = match command {
        ExceptionsCommand::List { remote, category, open, min_age, limit } => (remote, category, open, min_age, limit),
        ExceptionsCommand::Retry { exception_id, note, remote } => {
            let req = proto::ExceptionActionRequest { exception_id, note };
            let resp = call(&remote, async |mut c| Ok(c.workbench.retry_exception(req).await?.into_inner()))?;
            return print_exception_action(&remote, &resp);
        }
        ExceptionsCommand::Resolve { exception_id, note, remote } => {
            let req = proto::ExceptionActionRequest { exception_id, note };
            let resp = call(&remote, async |mut c| Ok(c.workbench.resolve_exception(req).await?.into_inner()))?;
            return print_exception_action(&remote, &resp);
        }
    };
    let req = proto::ListExceptionsRequest {
        category: category.unwrap_or_default(),
        open_only: open,
        min_age_seconds: min_age,
        limit,
    };
    let resp = call(&remote, async |mut c| Ok(c.queries.list_exceptions(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    let rows: Vec<Vec<String>> = resp
        .exceptions
        .iter()
        .map(|x| {
            vec![
                x.exception_id.clone(),
                x.category.clone(),
                x.order_ref.clone(),
                age(x.raised_at_us),
                if x.resolved_at_us == 0 { "open".into() } else { "resolved".into() },
                x.message.clone(),
            ]
        })
        .collect();
    print!("{}", table(&["EXCEPTION", "CATEGORY", "ORDER", "AGE", "STATE", "MESSAGE"], &rows));
    println!("{} exceptions", rows.len());
    Ok(())
}

fn print_exception_action(remote: &Remote, resp: &proto::ExceptionActionResponse) -> anyhow::Result<()> {
    if remote.output == Output::Json {
        return json(resp);
    }
    println!("{}", resp.message);
    if let Some(x) = &resp.exception {
        let state = if x.resolved_at_us == 0 { "open".to_string() } else { format!("resolved: {}", x.resolution) };
        println!("exception  {} ({}, order {})", x.exception_id, x.category, x.order_ref);
        println!("state      {state}");
    }
    println!("event      {}", resp.event_id);
    Ok(())
}

pub(super) fn saga(command: SagaCommand) -> anyhow::Result<()> {
    let SagaCommand::Replay { saga_id, dry_run, note, remote } = command;
    let req = proto::ReplayRequest { saga_id, note };
    let resp = if dry_run {
        call(&remote, async |mut c| Ok(c.workbench.dry_run_replay(req).await?.into_inner()))?
    } else {
        call(&remote, async |mut c| Ok(c.workbench.replay(req).await?.into_inner()))?
    };
    if remote.output == Output::Json {
        return json(&resp);
    }
    println!("{}", resp.message);
    let rows: Vec<Vec<String>> = resp
        .inputs
        .iter()
        .map(|i| {
            vec![
                format!("{}/{}@{}", i.topic, i.partition, i.offset),
                i.event.clone(),
                i.event_id.clone(),
                if i.dead_letter.is_empty() { "-".into() } else { i.dead_letter.clone() },
            ]
        })
        .collect();
    print!("\nrecords replayed\n{}", table(&["WHERE", "EVENT", "EVENT ID", "DEAD LETTER"], &rows));
    let title = if resp.dry_run { "journal events it would write" } else { "journal events written" };
    let rows: Vec<Vec<String>> = resp
        .journal
        .iter()
        .map(|t| vec![t.saga_id.clone(), t.seq.to_string(), t.event.clone(), t.summary.clone()])
        .collect();
    print!("\n{title}\n{}", table(&["SAGA", "SEQ", "EVENT", "SUMMARY"], &rows));
    let title = if resp.dry_run { "commands it would issue" } else { "commands issued" };
    let rows: Vec<Vec<String>> = resp
        .commands
        .iter()
        .map(|c| vec![c.idempotency_key.clone(), c.command.clone(), c.target.clone(), c.saga_id.clone()])
        .collect();
    print!("\n{title}\n{}", table(&["IDEMPOTENCY KEY", "COMMAND", "TARGET", "SAGA"], &rows));
    for r in &resp.refused {
        println!("still refused: {r}");
    }
    Ok(())
}

pub(super) fn order(command: OrderCommand) -> anyhow::Result<()> {
    let (order_ref, remote) = match command {
        OrderCommand::Show { order_ref, remote } => (order_ref, remote),
        OrderCommand::List { remote, state, older_than, page_size, page_token } => {
            return order_list(&remote, state, older_than, page_size, page_token);
        }
    };
    let req = proto::GetOrderRequest { order_ref };
    let resp = call(&remote, async |mut c| Ok(c.queries.get_order(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    let Some(o) = resp.order else { return Ok(()) };
    println!("order {}  status {}  customer {}  currency {}", o.order_ref, o.status, o.customer, o.currency);
    for p in &o.problems {
        println!("problem: {p}");
    }
    let rows: Vec<Vec<String>> = o
        .lines
        .iter()
        .map(|l| {
            vec![
                l.line_no.to_string(),
                l.sku.clone(),
                l.uom.clone(),
                l.ordered.clone(),
                l.shipped.clone(),
                money(l.unit_price_minor),
                l.tax_code.clone(),
            ]
        })
        .collect();
    print!("\n{}", table(&["LINE", "SKU", "UOM", "ORDERED", "SHIPPED", "PRICE", "TAX"], &rows));
    if !o.postings.is_empty() {
        let rows: Vec<Vec<String>> = o
            .postings
            .iter()
            .map(|p| {
                vec![
                    p.posting_id.clone(),
                    format!("{} {}", p.amount, p.currency),
                    p.version.to_string(),
                    p.state.clone(),
                ]
            })
            .collect();
        print!("\n{}", table(&["POSTING", "AMOUNT", "VERSION", "STATE"], &rows));
    }
    let rows: Vec<Vec<String>> = o
        .timeline
        .iter()
        .map(|t| vec![age(t.at_us), t.saga_id.clone(), t.seq.to_string(), t.event.clone(), t.summary.clone()])
        .collect();
    print!("\n{}", table(&["AGO", "SAGA", "SEQ", "EVENT", "SUMMARY"], &rows));
    Ok(())
}

fn order_list(
    remote: &Remote,
    state: Option<String>,
    older_than: i64,
    page_size: u32,
    page_token: Option<String>,
) -> anyhow::Result<()> {
    let req = proto::ListOrdersRequest {
        state: state.unwrap_or_default(),
        older_than_seconds: older_than,
        page_size,
        page_token: page_token.unwrap_or_default(),
    };
    let resp = call(remote, async |mut c| Ok(c.queries.list_orders(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    let rows: Vec<Vec<String>> = resp
        .orders
        .iter()
        .map(|o| {
            vec![
                o.order_ref.clone(),
                o.status.clone(),
                o.customer.clone(),
                o.open_exceptions.to_string(),
                age(o.last_event_at_us),
                age(o.first_event_at_us),
            ]
        })
        .collect();
    print!("{}", table(&["ORDER", "STATUS", "CUSTOMER", "OPEN EXCEPTIONS", "UNCHANGED FOR", "AGE"], &rows));
    if !resp.next_page_token.is_empty() {
        println!("more: --page-token {}", resp.next_page_token);
    }
    Ok(())
}

pub(super) fn trace(source_ref: &str, remote: &Remote) -> anyhow::Result<()> {
    let req = proto::GetLineageRequest { source_ref: source_ref.to_string() };
    let resp = call(remote, async |mut c| Ok(c.queries.get_lineage(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    let rows: Vec<Vec<String>> = resp
        .entries
        .iter()
        .map(|e| {
            vec![
                e.kind.clone(),
                e.id.clone(),
                e.name.clone(),
                format!("{}/{}@{}", e.topic, e.partition, e.offset),
                age(e.at_us),
            ]
        })
        .collect();
    print!("{}", table(&["KIND", "ID", "NAME", "WHERE", "AGO"], &rows));
    Ok(())
}

/// `waybill dlq list|replay --server`: through the control plane (operator, audited).
pub(super) fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { remote, matching, output, .. } => {
            let remote = remote.remote(output).expect("called with --server");
            let req = proto::ListDeadLettersRequest { matching: matching.unwrap_or_default(), limit: 0 };
            let r = call(&remote, async move |mut c| Ok(c.workbench.list_dead_letters(req).await?.into_inner()))?;
            if remote.output == Output::Json {
                let items: Vec<serde_json::Value> = r
                    .dead_letters
                    .iter()
                    .map(|d| {
                        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                        serde_json::json!({
                            "partition": d.partition,
                            "offset": d.offset,
                            "kind": d.kind,
                            "reason": d.reason,
                            "source_topic": d.source_topic,
                            "caller": (!d.caller.is_empty()).then_some(&d.caller),
                            "key": text(&d.key),
                            "headers": d.headers.iter().map(|h| (h.key.clone(), serde_json::Value::String(text(&h.value)))).collect::<serde_json::Map<_, _>>(),
                            "value_base64": waybill_server::schemas::base64(&d.value),
                            "timestamp_ms": d.timestamp_ms,
                        })
                    })
                    .collect();
                return json(&items);
            }
            let rows: Vec<Vec<String>> = r
                .dead_letters
                .iter()
                .map(|d| {
                    let from = if d.caller.is_empty() {
                        d.source_topic.clone()
                    } else {
                        format!("{} ({})", d.source_topic, d.caller)
                    };
                    vec![format!("{}@{}", d.partition, d.offset), d.kind.clone(), from, d.reason.clone()]
                })
                .collect();
            print!("{}", table(&["position", "kind", "from", "reason"], &rows));
            println!(
                "{} dead letters{}",
                r.total,
                if (r.total as usize) > r.dead_letters.len() {
                    format!(" ({} shown)", r.dead_letters.len())
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        DlqCommand::Replay { remote, matching, note, .. } => {
            let remote = remote.remote(Output::Table).expect("called with --server");
            let req = proto::ReplayDeadLettersRequest { matching: matching.unwrap_or_default(), note };
            let r = call(&remote, async move |mut c| Ok(c.workbench.replay_dead_letters(req).await?.into_inner()))?;
            println!("replayed {} dead letters to their original topics", r.replayed);
            Ok(())
        }
    }
}
