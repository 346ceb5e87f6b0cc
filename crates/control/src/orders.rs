//! `Queries.ListOrders`: orders by status and age, the longest unchanged first, paged.
//! An operator finds orders that sit in a state ("picked for more than a day") with it;
//! the answer comes from the projections' status-and-age index, so a page costs the
//! orders on it, not the store's size.

use waybill_domain::Timestamp;
use waybill_projection::{OrderStatus, OrderView};

use crate::error::{Error, Result};
use crate::proto;
use crate::service::Control;

/// Page size when the request names none.
const DEFAULT_PAGE: usize = 100;
/// The largest page served.
const MAX_PAGE: usize = 1000;

/// The page token of the order after which the next page starts.
fn token(o: &OrderView) -> String {
    format!("{}/{}", o.last_event_at.0, o.order_ref)
}

fn parse_token(t: &str) -> Result<Option<(Timestamp, String)>> {
    if t.is_empty() {
        return Ok(None);
    }
    match t.split_once('/') {
        Some((at, order_ref)) if !order_ref.is_empty() => match at.parse::<i64>() {
            Ok(at) => Ok(Some((Timestamp(at), order_ref.to_string()))),
            Err(_) => Err(Error::InvalidArgument(bad_token())),
        },
        _ => Err(Error::InvalidArgument(bad_token())),
    }
}

fn bad_token() -> String {
    "page_token is not one this server issued; start again without it".into()
}

fn parse_state(s: &str) -> Result<Option<OrderStatus>> {
    if s.is_empty() || s == "all" {
        return Ok(None);
    }
    OrderStatus::parse(s).map(Some).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "state {s:?} is not an order status; use one of {} (or leave it empty for all)",
            OrderStatus::ALL.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn summary(o: &OrderView) -> proto::OrderSummary {
    proto::OrderSummary {
        order_ref: o.order_ref.clone(),
        status: o.status.to_string(),
        customer: o.customer_ref.clone().unwrap_or_default(),
        open_exceptions: o.open_exceptions,
        first_event_at_us: o.first_event_at.0,
        last_event_at_us: o.last_event_at.0,
        completed_at_us: o.completed_at.map(|t| t.0).unwrap_or_default(),
    }
}

impl Control {
    /// Answers `ListOrders` at time `now`.
    pub(crate) fn list_orders(
        &self,
        r: &proto::ListOrdersRequest,
        now: Timestamp,
    ) -> Result<proto::ListOrdersResponse> {
        let status = parse_state(&r.state)?;
        if r.older_than_seconds < 0 {
            return Err(Error::InvalidArgument(format!(
                "older_than_seconds is {}; give a number of seconds of 0 or more",
                r.older_than_seconds
            )));
        }
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let after = parse_token(&r.page_token)?;
        let changed_by = (r.older_than_seconds > 0)
            .then(|| Timestamp(now.0.saturating_sub(r.older_than_seconds.saturating_mul(Timestamp::MICROS_PER_SEC))));
        // One more than the page: whether there is a next page.
        let mut orders = self.projections.orders_by_age(
            status,
            changed_by,
            after.as_ref().map(|(at, o)| (*at, o.as_str())),
            page_size + 1,
        )?;
        let more = orders.len() > page_size;
        orders.truncate(page_size);
        let next_page_token = match orders.last() {
            Some(last) if more => token(last),
            _ => String::new(),
        };
        Ok(proto::ListOrdersResponse { orders: orders.iter().map(summary).collect(), next_page_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_strangers_are_refused() {
        assert_eq!(parse_token("").unwrap(), None);
        assert_eq!(parse_token("17/SO1").unwrap(), Some((Timestamp(17), "SO1".to_string())));
        for bad in ["x/SO1", "17", "17/"] {
            let e = parse_token(bad).unwrap_err().to_string();
            assert!(e.contains("start again without it"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_unknown_state_names_the_valid_ones() {
        assert_eq!(parse_state("picked").unwrap(), Some(OrderStatus::Picked));
        assert_eq!(parse_state("").unwrap(), None);
        let e = parse_state("stuck").unwrap_err().to_string();
        assert!(e.contains("\"stuck\"") && e.contains("picked") && e.contains("backordered"), "{e}");
    }
}
