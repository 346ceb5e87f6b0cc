//! `waybill order show|list`: orders on a running server.

use clap::Subcommand;
use waybill_control::proto;

use super::render::{Output, age, json, money, table};
use super::{Remote, call};

#[derive(Debug, Subcommand)]
pub(crate) enum OrderCommand {
    /// An order with its lines, shipments, postings and timeline.
    Show {
        /// Sale order name.
        order_ref: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Orders by state and age, the longest unchanged first: e.g. `--state picked
    /// --older-than 1d` finds orders picked a day ago that have not moved since.
    List {
        #[command(flatten)]
        remote: Remote,
        /// Order status (`reserving`, `released`, `picking`, `picked`, `shipped`,
        /// `delivered`, `on-hold`, `completed`, `backordered`, `cancelled`, ...); all when
        /// absent.
        #[arg(long)]
        state: Option<String>,
        /// Only orders whose latest change is at least this old: `90s`, `30m`, `4h`, `2d`
        /// (a bare number is seconds).
        #[arg(long, value_parser = parse_age, default_value = "0")]
        older_than: i64,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Page token printed by the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
}

/// `90s`, `30m`, `4h`, `2d` or a bare number of seconds, as seconds.
pub(crate) fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().map_err(|_| format!("{s:?} is not an age; write e.g. 90s, 30m, 4h or 2d"))?;
    let per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} has unit {unit:?}; use s, m, h or d (e.g. 4h)")),
    };
    n.checked_mul(per).ok_or_else(|| format!("{s:?} is too large"))
}

pub(crate) fn run(command: OrderCommand) -> anyhow::Result<()> {
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
    // A purchase order's record (`po:<name>`) has no sale order lines: its story is the
    // timeline, its held bills and its documents.
    let purchase = o.order_ref.strip_prefix(waybill_domain::purchase::KEY_PREFIX);
    if let Some(po) = purchase {
        let done = o.timeline.last().is_some_and(|t| t.event == "Completed");
        let state = if done { "completed" } else { "open" };
        println!("purchase order {po}  ({})  {state}  currency {}", o.order_ref, o.currency);
    } else {
        println!("order {}  status {}  customer {}  currency {}", o.order_ref, o.status, o.customer, o.currency);
    }
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
    if purchase.is_none() {
        print!("\n{}", table(&["LINE", "SKU", "UOM", "ORDERED", "SHIPPED", "PRICE", "TAX"], &rows));
    }
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

pub(crate) fn order_list(
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
