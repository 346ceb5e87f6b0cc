//! One sample value of every event, command and journal variant, for round-trip tests
//! and codec benchmarks. Optional fields are set in some samples and empty in others so
//! both union branches are exercised.

use waybill_domain::cash::{
    BankLine, BankLineKind, InvoiceAllocation, LineAssignment, OpenItem, StatementEntry, StatementLinePosted,
    StatementLineRejected, StatementReceived,
};
use waybill_domain::command::{
    AdjustStock, AdjustmentLine, BackorderLine, BackorderRequest, BookCarrier, CommandBody, ConfirmShipment,
    InvoiceLine, IssueCreditNote, OrderOnly, PostInvoice, StockRequest,
};
use waybill_domain::event::{
    CarrierBooked, CommandFailed, CreditNoteIssued, Delivered, DocumentRejected, EventBody, ExceptionAction,
    ExceptionAssignment, GoodsIssued, InvoicePosted, ItemCondition, LineReservation, LotQty, OrderCancelled, OrderLine,
    OrderReleased, Package, PickConfirmed, PickedLine, PostingDecision, ReleasedToWarehouse, ReplayInput,
    ReplayRequest, ReturnAuthorized, ReturnReceived, ReturnedLine, RmaLine, ShippedLine, StockReserved, TargetOutage,
    TimerTick,
};
use waybill_domain::journal::{
    Allocation, Backorder, BusinessKey, Cancelled, CarrierAssigned, Checkpoint, ControlRefusal, CreditNoteDraft,
    CreditNoteRecorded, Deadline, DeliveryConfirmed, DocumentKind, Empty, ExceptionAssigned, ExceptionCategory,
    ExceptionRaised, ExceptionResolved, ExceptionRetried, FlowRetired, InputPosition, InvoiceDraft, InvoiceRecorded,
    JournalBody, JournalMeta, PostingHeld, PostingOutcome, Problems, Refusal, ReleaseRequested, SagaKind, SagaReplayed,
    WarehouseAccepted,
};
use waybill_domain::purchase::{
    BillLine, BillMatch, GoodsReceipt, PurchaseLine, PurchaseOrderClosed, PurchaseOrderConfirmed, ReceiptCancelled,
    ReceiptPosting, ReceiptReversal, ReceiptValidated, ReceivedLine, ShipNotice, ShipNoticeLine, VendorBill,
    VendorBillPosted, VendorBillRejected, VendorCredit, VendorCreditIssued,
};
use waybill_domain::reconcile::{Movements, ReconcileOutcome, StockObserved, StockReconciliation};
use waybill_domain::{
    Command, CommandMeta, EventMeta, InboundEvent, JournalEvent, Money, Qty, SourceRef, System, Timestamp,
};

const T0: Timestamp = Timestamp(1_767_225_600_000_000); // 2026-01-01T00:00:00Z

fn s(text: &str) -> String {
    text.to_string()
}

/// A purchase order of two lines.
pub fn purchase_order() -> PurchaseOrderConfirmed {
    PurchaseOrderConfirmed {
        po_ref: s("P00042"),
        supplier_ref: s("SUP-3"),
        supplier_name: s("Acme Fasteners GmbH"),
        currency: s("EUR"),
        company: Some(s("acme-de")),
        lines: vec![
            PurchaseLine { line_no: 1, sku: s("WIDGET-10"), quantity: Qty::units(100), unit_price: Money(850) },
            PurchaseLine { line_no: 2, sku: s("BOLT-M8"), quantity: Qty(25_000), unit_price: Money(310) },
        ],
        expected_at: T0.plus_secs(7.0 * 86_400.0),
    }
}

/// A notice for both lines, one lot-tracked.
pub fn ship_notice() -> ShipNotice {
    ShipNotice {
        po_ref: s("P00042"),
        asn_id: s("ASN-7"),
        supplier_ref: s("SUP-3"),
        shipped_at: T0.plus_secs(5.0 * 86_400.0),
        lines: vec![
            ShipNoticeLine {
                asn_line_no: 1,
                po_line_no: 1,
                sku: s("WIDGET-10"),
                quantity: Qty::units(100),
                lots: lots(),
                serials: vec![],
            },
            ShipNoticeLine {
                asn_line_no: 2,
                po_line_no: 2,
                sku: s("BOLT-M8"),
                quantity: Qty(25_000),
                lots: vec![],
                serials: vec![s("SN-9")],
            },
        ],
    }
}

/// The lines of a receipt: one against the notice with two damaged, one without.
pub fn received_lines() -> Vec<ReceivedLine> {
    vec![
        ReceivedLine {
            po_line_no: 1,
            asn_line_no: Some(1),
            sku: s("WIDGET-10"),
            quantity: Qty::units(98),
            damaged: Qty::units(2),
            lots: lots(),
            serials: vec![],
            bin: s("IN-01-A"),
        },
        ReceivedLine {
            po_line_no: 2,
            asn_line_no: None,
            sku: s("BOLT-M8"),
            quantity: Qty(25_000),
            damaged: Qty(0),
            lots: vec![],
            serials: vec![s("SN-9")],
            bin: s("IN-02-C"),
        },
    ]
}

/// A receipt against the notice.
pub fn goods_receipt() -> GoodsReceipt {
    GoodsReceipt { po_ref: s("P00042"), receipt_id: s("RCV-P42-1"), asn_id: Some(s("ASN-7")), lines: received_lines() }
}

/// A vendor bill for what was received.
pub fn vendor_bill() -> VendorBill {
    VendorBill {
        po_ref: s("P00042"),
        bill_number: s("AF-2026-118"),
        supplier_ref: s("SUP-3"),
        currency: s("EUR"),
        lines: bill_lines(),
        amount: Money(91_050),
    }
}

fn bill_lines() -> Vec<BillLine> {
    vec![
        BillLine { po_line_no: 1, sku: s("WIDGET-10"), quantity: Qty::units(98), unit_price: Money(850) },
        BillLine { po_line_no: 2, sku: s("BOLT-M8"), quantity: Qty(25_000), unit_price: Money(310) },
    ]
}

/// A vendor credit note for a cancelled, billed receipt.
pub fn vendor_credit() -> VendorCredit {
    VendorCredit {
        po_ref: s("P00042"),
        receipt_id: s("RCV-P42-1"),
        bill_number: s("AF-2026-118"),
        supplier_ref: s("SUP-3"),
        currency: s("EUR"),
        lines: bill_lines(),
        amount: Money(91_050),
    }
}

/// A statement of two lines (a payment with references, a bank charge) and two open items.
pub fn statement() -> StatementReceived {
    StatementReceived {
        statement_key: s("DE89370400440532013000/2026-118"),
        statement_id: s("2026-118"),
        format: s("camt.053"),
        account: s("DE89370400440532013000"),
        currency: s("EUR"),
        entity: None,
        checksum: s("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
        lines: vec![
            BankLine {
                line_id: s("2026-118/1"),
                kind: BankLineKind::Payment,
                booking_date: Some(T0),
                amount: Money(29_026),
                currency: s("EUR"),
                fee: Money(0),
                counterparty: Some(s("Müller Handels GmbH")),
                creditor_references: vec![s("RF18INV20260001")],
                end_to_end_id: Some(s("E2E-77")),
                remittance: vec![s("INV/2026/0001")],
                bank_reference: Some(s("BANKREF-1")),
            },
            BankLine {
                line_id: s("2026-118/2"),
                kind: BankLineKind::Fee,
                booking_date: None,
                amount: Money(-250),
                currency: s("EUR"),
                fee: Money(0),
                counterparty: None,
                creditor_references: vec![],
                end_to_end_id: None,
                remittance: vec![],
                bank_reference: None,
            },
        ],
        open_items: vec![
            OpenItem {
                number: s("INV/2026/0001"),
                customer_ref: s("CUST-7"),
                customer_name: s("Müller Handels GmbH"),
                open_amount: Money(29_026),
                currency: s("EUR"),
                due_at: Some(T0.plus_secs(30.0 * 86_400.0)),
            },
            OpenItem {
                number: s("INV/2026/0002"),
                customer_ref: s("CUST-8"),
                customer_name: s("Nordwind AG"),
                open_amount: Money(1_000),
                currency: s("EUR"),
                due_at: None,
            },
        ],
    }
}

/// The entry of the statement's first line.
pub fn statement_entry() -> StatementEntry {
    StatementEntry {
        statement_key: s("DE89370400440532013000/2026-118"),
        line_id: s("2026-118/1"),
        rule: s("reference"),
        amount: Money(29_026),
        currency: s("EUR"),
        booking_date: Some(T0),
        counterparty: Some(s("Müller Handels GmbH")),
        allocations: vec![InvoiceAllocation { invoice: s("INV/2026/0001"), amount: Money(29_026) }],
        fee: Money(0),
        write_off: Money(0),
        remainder: Money(0),
        on_account: None,
    }
}

fn movements() -> Movements {
    Movements { received: Qty(40_000), returned_to_vendor: Qty(0), shipped: Qty(12_000), restocked: Qty(1_000) }
}

fn line_posted() -> StatementLinePosted {
    StatementLinePosted {
        statement_key: s("DE89370400440532013000/2026-118"),
        line_id: s("2026-118/1"),
        entry_number: s("BNK1/2026/0118"),
    }
}

/// A released order with two lines, one without a tax code.
pub fn order_released() -> OrderReleased {
    OrderReleased {
        order_ref: s("SO0042"),
        customer_ref: s("CUST-7"),
        ship_to: s("ADDR-7-1"),
        currency: s("EUR"),
        client_order_ref: Some(s("PO-99812")),
        company: Some(s("acme-de")),
        lines: vec![
            OrderLine {
                line_no: 1,
                sku: s("WIDGET-10"),
                uom: s("Units"),
                quantity: Qty::units(12),
                unit_price: Money(1999),
                tax_code: Some(s("VAT21")),
                requested_date: T0.plus_secs(86_400.0),
                warehouse: s("WH1"),
            },
            OrderLine {
                line_no: 2,
                sku: s("BOLT-M8"),
                uom: s("kg"),
                quantity: Qty(2500),
                unit_price: Money(-5),
                tax_code: None,
                requested_date: T0,
                warehouse: s("WH1"),
            },
        ],
    }
}

fn lots() -> Vec<LotQty> {
    vec![LotQty { lot: s("LOT-A"), quantity: Qty::units(7) }, LotQty { lot: s("LOT-B"), quantity: Qty::units(5) }]
}

fn pick_confirmed() -> PickConfirmed {
    PickConfirmed {
        order_ref: s("SO0042"),
        pick_id: s("PICK-1"),
        lines: vec![PickedLine {
            line_no: 1,
            sku: s("WIDGET-10"),
            quantity: Qty::units(12),
            lots: lots(),
            serials: vec![s("SN-1"), s("SN-2")],
            bin: s("A-01-03"),
        }],
        complete: true,
    }
}

fn goods_issued() -> GoodsIssued {
    GoodsIssued {
        order_ref: s("SO0042"),
        shipment_id: s("SHP-1"),
        lines: vec![ShippedLine {
            line_no: 1,
            sku: s("WIDGET-10"),
            quantity: Qty::units(12),
            lots: lots(),
            serials: vec![],
        }],
        packages: vec![Package { package_id: s("00340123450000000018"), weight_grams: 12_345 }],
    }
}

fn line_reservations() -> Vec<LineReservation> {
    vec![
        LineReservation { line_no: 1, reserved: Qty::units(12), short: Qty::ZERO },
        LineReservation { line_no: 2, reserved: Qty(1000), short: Qty(1500) },
    ]
}

fn posting_outcome() -> PostingOutcome {
    PostingOutcome {
        posting_id: s("inv:SHP-1"),
        version: 2,
        actor: s("alice@example.com"),
        role: s("approver"),
        reason: s("price agreed with customer"),
    }
}

fn invoice_draft() -> InvoiceDraft {
    InvoiceDraft {
        order_ref: s("SO0042"),
        business_key: s("SHP-1"),
        customer_ref: s("CUST-7"),
        currency: s("EUR"),
        lines: invoice_lines(),
        total: Money(23_988),
    }
}

fn posting_decision() -> PostingDecision {
    PostingDecision {
        order_ref: s("SO0042"),
        posting_id: s("inv:SHP-1"),
        expected_version: 3,
        actor: s("alice@example.com"),
        reason: s("price agreed with customer"),
        role: s("approver"),
    }
}

fn exception_action(note: &str) -> ExceptionAction {
    ExceptionAction {
        order_ref: s("SO0042"),
        exception_id: s("o2f:SO0042/pick-overdue/1"),
        actor: s("olga@example.com"),
        role: s("operator"),
        peer: s("10.0.0.7:51234"),
        request_id: s("req-1"),
        note: s(note),
    }
}

fn rejected() -> DocumentRejected {
    DocumentRejected { order_ref: s("SO0042"), business_key: s("SHP-1"), reason: s("customer on credit hold") }
}

fn event_meta(n: u32) -> EventMeta {
    EventMeta {
        event_id: format!("evt-{n}"),
        source: SourceRef::new(System::ALL[n as usize % System::ALL.len()], format!("REC-{n}")),
        correlation_key: s("SO0042"),
        occurred_at: Timestamp(T0.0 + i64::from(n)),
        actor: n.is_multiple_of(2).then(|| format!("user-{n}")),
    }
}

/// One body of every [`EventBody`] variant, in declaration order.
pub fn event_bodies() -> Vec<EventBody> {
    let bodies = vec![
        EventBody::OrderReleased(order_released()),
        EventBody::StockReserved(StockReserved { order_ref: s("SO0042"), lines: line_reservations() }),
        EventBody::ReleasedToWarehouse(ReleasedToWarehouse { order_ref: s("SO0042"), wms_order_id: s("WAVE-9") }),
        EventBody::PickConfirmed(pick_confirmed()),
        EventBody::GoodsIssued(goods_issued()),
        EventBody::CarrierBooked(CarrierBooked {
            order_ref: s("SO0042"),
            shipment_id: s("SHP-1"),
            carrier: s("DHL"),
            tracking_ref: s("JD0142"),
        }),
        EventBody::Delivered(Delivered { order_ref: s("SO0042"), shipment_id: s("SHP-1"), signed_by: None }),
        EventBody::OrderCancelled(OrderCancelled { order_ref: s("SO0042"), reason: s("customer request") }),
        EventBody::InvoicePosted(InvoicePosted {
            order_ref: s("SO0042"),
            shipment_id: s("SHP-1"),
            invoice_number: s("INV/2026/0001"),
            amount: Money(29_026),
        }),
        EventBody::InvoiceRejected(rejected()),
        EventBody::PostingApproved(posting_decision()),
        EventBody::PostingRejected(posting_decision()),
        EventBody::ReturnAuthorized(ReturnAuthorized {
            order_ref: s("SO0042"),
            rma_id: s("RMA-5"),
            reason: s("damaged in transit"),
            lines: vec![RmaLine { line_no: 1, sku: s("WIDGET-10"), quantity: Qty::units(2) }],
        }),
        EventBody::ReturnReceived(ReturnReceived {
            order_ref: s("SO0042"),
            rma_id: s("RMA-5"),
            receipt_id: s("RCV-5"),
            lines: vec![
                ReturnedLine {
                    line_no: 1,
                    sku: s("WIDGET-10"),
                    quantity: Qty::units(1),
                    condition: ItemCondition::Restock,
                    lots: vec![],
                    serials: vec![s("SN-1")],
                },
                ReturnedLine {
                    line_no: 1,
                    sku: s("WIDGET-10"),
                    quantity: Qty::units(1),
                    condition: ItemCondition::Scrap,
                    lots: lots(),
                    serials: vec![],
                },
            ],
        }),
        EventBody::CreditNoteIssued(CreditNoteIssued {
            order_ref: s("SO0042"),
            receipt_id: s("RCV-5"),
            credit_note_number: s("RINV/2026/0001"),
            amount: Money(3998),
        }),
        EventBody::CreditNoteRejected(rejected()),
        EventBody::ExceptionRetryRequested(exception_action("")),
        EventBody::ExceptionResolveRequested(exception_action("stock counted; the warehouse confirmed by phone")),
        EventBody::ExceptionAssignRequested(ExceptionAssignment {
            order_ref: s("SO0042"),
            exception_id: s("o2f:SO0042/pick-overdue/1"),
            owner: s("wh-leads-w1"),
            actor: s("olga@example.com"),
            role: s("operator"),
            peer: s("10.0.0.7:51234"),
            request_id: s("req-3"),
            note: s("W1 shift lead chases the pick"),
        }),
        EventBody::SagaReplayRequested(Box::new(ReplayRequest {
            order_ref: s("SO0042"),
            saga_id: s("o2f:SO0042"),
            actor: s("olga@example.com"),
            role: s("operator"),
            peer: s("10.0.0.7:51234"),
            request_id: s("req-2"),
            note: s("carrier booking arrived before the goods issue"),
            inputs: vec![
                ReplayInput { topic: s("waybill.inbound.odoo"), partition: 3, offset: 17, dead_letter: None },
                ReplayInput {
                    topic: s("waybill.inbound.carrier"),
                    partition: 3,
                    offset: 4,
                    dead_letter: Some(s("dlq:waybill.inbound.carrier:3:4")),
                },
            ],
        })),
        EventBody::TimerTick(TimerTick { partition: 3, at: T0 }),
        EventBody::CommandFailed(CommandFailed {
            saga_id: s("o2f:SO0042"),
            idempotency_key: s("confirm-shipment:SHP-1"),
            command: s("ConfirmShipment"),
            target: System::Odoo,
            reason: s("ValidationError: the picking WH/OUT/00042 is already done"),
            attempts: 1,
        }),
        EventBody::TargetUnavailable(TargetOutage { target: System::Odoo, since: T0, reason: s("connection refused") }),
        EventBody::TargetRecovered(TargetOutage {
            target: System::Odoo,
            since: T0,
            reason: s("answered after 3 min 12 s"),
        }),
        EventBody::PurchaseOrderConfirmed(purchase_order()),
        EventBody::PurchaseOrderClosed(PurchaseOrderClosed { po_ref: s("P00042"), reason: s("rest cancelled") }),
        EventBody::ShipNoticeReceived(ship_notice()),
        EventBody::GoodsReceived(goods_receipt()),
        EventBody::ReceiptValidated(ReceiptValidated {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            picking_ref: s("WH/IN/00012"),
        }),
        EventBody::ReceiptCancelled(ReceiptCancelled {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            reason: s("wrong goods delivered"),
        }),
        EventBody::VendorBillReceived(vendor_bill()),
        EventBody::VendorBillPosted(VendorBillPosted {
            po_ref: s("P00042"),
            bill_number: s("AF-2026-118"),
            document_number: s("BILL/2026/0042"),
            amount: Money(91_050),
        }),
        EventBody::VendorBillRejected(VendorBillRejected {
            po_ref: s("P00042"),
            bill_number: s("AF-2026-118"),
            reason: s("supplier blocked for payment"),
        }),
        EventBody::VendorCreditNoteIssued(VendorCreditIssued {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            credit_number: s("RBILL/2026/0003"),
            amount: Money(91_050),
        }),
        EventBody::StatementReceived(Box::new(statement())),
        EventBody::StatementLinePosted(line_posted()),
        EventBody::StatementLineRejected(StatementLineRejected {
            statement_key: s("DE89370400440532013000/2026-118"),
            line_id: s("2026-118/1"),
            reason: s("journal BNK1 is locked"),
        }),
        EventBody::StockObserved(StockObserved {
            run_id: s("stock-20261201T0900"),
            sku: s("BOLT-M8"),
            on_hand: Qty(118_000),
            wms_last_movement: Some(s("SHP-1")),
            journaled: movements(),
            journal_last_movement: Some(s("ShipmentRecorded SHP-1")),
            tolerance: Qty(0),
            window: T0,
        }),
        EventBody::StatementLineAssignRequested(LineAssignment {
            statement_key: s("DE89370400440532013000/2026-118"),
            exception_id: s("cash:DE89370400440532013000/2026-118/unmatched-payment/1"),
            line_id: s("2026-118/2"),
            allocations: vec![InvoiceAllocation { invoice: s("INV/2026/0002"), amount: Money(1_000) }],
            on_account: Some(s("CUST-8")),
            actor: s("olga@example.com"),
            role: s("operator"),
            peer: s("10.0.0.7:51234"),
            request_id: s("req-5"),
            note: s("the customer confirmed INV/2026/0002 by phone; the rest is a prepayment"),
        }),
    ];
    // Exhaustive on purpose: a new variant fails to compile here until it has a sample.
    for body in &bodies {
        match body {
            EventBody::OrderReleased(_)
            | EventBody::StockReserved(_)
            | EventBody::ReleasedToWarehouse(_)
            | EventBody::PickConfirmed(_)
            | EventBody::GoodsIssued(_)
            | EventBody::CarrierBooked(_)
            | EventBody::Delivered(_)
            | EventBody::OrderCancelled(_)
            | EventBody::InvoicePosted(_)
            | EventBody::InvoiceRejected(_)
            | EventBody::PostingApproved(_)
            | EventBody::PostingRejected(_)
            | EventBody::ReturnAuthorized(_)
            | EventBody::ReturnReceived(_)
            | EventBody::CreditNoteIssued(_)
            | EventBody::CreditNoteRejected(_)
            | EventBody::ExceptionRetryRequested(_)
            | EventBody::ExceptionResolveRequested(_)
            | EventBody::ExceptionAssignRequested(_)
            | EventBody::SagaReplayRequested(_)
            | EventBody::TimerTick(_)
            | EventBody::CommandFailed(_)
            | EventBody::TargetUnavailable(_)
            | EventBody::TargetRecovered(_)
            | EventBody::PurchaseOrderConfirmed(_)
            | EventBody::PurchaseOrderClosed(_)
            | EventBody::ShipNoticeReceived(_)
            | EventBody::GoodsReceived(_)
            | EventBody::ReceiptValidated(_)
            | EventBody::ReceiptCancelled(_)
            | EventBody::VendorBillReceived(_)
            | EventBody::VendorBillPosted(_)
            | EventBody::VendorBillRejected(_)
            | EventBody::VendorCreditNoteIssued(_)
            | EventBody::StatementReceived(_)
            | EventBody::StatementLinePosted(_)
            | EventBody::StatementLineRejected(_)
            | EventBody::StockObserved(_)
            | EventBody::StatementLineAssignRequested(_) => {}
        }
    }
    bodies
}

/// One inbound event of every variant, in declaration order.
pub fn events() -> Vec<InboundEvent> {
    event_bodies().into_iter().zip(0..).map(|(body, n)| InboundEvent { meta: event_meta(n), body }).collect()
}

fn invoice_lines() -> Vec<InvoiceLine> {
    vec![InvoiceLine {
        line_no: 1,
        sku: s("WIDGET-10"),
        quantity: Qty::units(12),
        unit_price: Money(1999),
        tax_code: s("VAT21"),
    }]
}

/// One command of every [`CommandBody`] variant, in declaration order.
pub fn commands() -> Vec<Command> {
    let stock = StockRequest { order_ref: s("SO0042"), warehouse: s("WH1"), lines: order_released().lines };
    let order_only = OrderOnly { order_ref: s("SO0042"), reason: s("order cancelled") };
    let bodies = vec![
        CommandBody::ReserveStock(stock.clone()),
        CommandBody::ReleaseToWarehouse(stock),
        CommandBody::CancelReservation(order_only.clone()),
        CommandBody::CancelWarehouseRelease(order_only),
        CommandBody::CreateBackorder(BackorderRequest {
            order_ref: s("SO0042"),
            lines: vec![BackorderLine { line_no: 2, sku: s("BOLT-M8"), quantity: Qty(1500) }],
        }),
        CommandBody::BookCarrier(BookCarrier {
            order_ref: s("SO0042"),
            shipment_id: s("SHP-1"),
            ship_to: s("ADDR-7-1"),
            packages: goods_issued().packages,
        }),
        CommandBody::ConfirmShipment(ConfirmShipment {
            order_ref: s("SO0042"),
            shipment_id: s("SHP-1"),
            tracking_ref: s("JD0142"),
            lines: goods_issued().lines,
        }),
        CommandBody::PostInvoice(PostInvoice {
            order_ref: s("SO0042"),
            shipment_id: s("SHP-1"),
            customer_ref: s("CUST-7"),
            currency: s("EUR"),
            lines: invoice_lines(),
            total: Money(23_988),
        }),
        CommandBody::IssueCreditNote(IssueCreditNote {
            order_ref: s("SO0042"),
            receipt_id: s("RCV-5"),
            invoice_number: s("INV/2026/0001"),
            lines: invoice_lines(),
            restocking_fee: Money(500),
            total: Money(3498),
        }),
        CommandBody::AdjustStock(AdjustStock {
            order_ref: s("SO0042"),
            receipt_id: s("RCV-5"),
            warehouse: s("WH1"),
            lines: vec![AdjustmentLine {
                sku: s("WIDGET-10"),
                quantity: Qty::units(1),
                condition: ItemCondition::Scrap,
                lots: lots(),
            }],
        }),
        CommandBody::ValidateReceipt(ReceiptPosting {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            lines: received_lines(),
        }),
        CommandBody::ReturnToVendor(ReceiptPosting {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            lines: received_lines(),
        }),
        CommandBody::PostVendorBill(vendor_bill()),
        CommandBody::IssueVendorCreditNote(vendor_credit()),
        CommandBody::PostStatementLine(statement_entry()),
    ];
    for body in &bodies {
        match body {
            CommandBody::ReserveStock(_)
            | CommandBody::ReleaseToWarehouse(_)
            | CommandBody::CancelReservation(_)
            | CommandBody::CancelWarehouseRelease(_)
            | CommandBody::CreateBackorder(_)
            | CommandBody::BookCarrier(_)
            | CommandBody::ConfirmShipment(_)
            | CommandBody::PostInvoice(_)
            | CommandBody::IssueCreditNote(_)
            | CommandBody::AdjustStock(_)
            | CommandBody::ValidateReceipt(_)
            | CommandBody::ReturnToVendor(_)
            | CommandBody::PostVendorBill(_)
            | CommandBody::IssueVendorCreditNote(_)
            | CommandBody::PostStatementLine(_) => {}
        }
    }
    bodies
        .into_iter()
        .zip(0..)
        .map(|(body, n)| Command {
            meta: CommandMeta {
                idempotency_key: format!("{}:SO0042:{n}", body.name()),
                saga_id: SagaKind::OrderToFulfillment.saga_id("SO0042"),
                correlation_key: s("SO0042"),
                target: [System::Wms, System::Odoo, System::Carrier, System::Finance][n % 4],
                caused_by: format!("evt-{n}"),
                issued_at: Timestamp(T0.0 + n as i64),
            },
            body,
        })
        .collect()
}

/// One journal event of every [`JournalBody`] variant, in declaration order.
pub fn journal_events() -> Vec<JournalEvent> {
    let bodies = vec![
        JournalBody::OrderAccepted(order_released()),
        JournalBody::MasterDataFailed(Problems { problems: vec![s("line 2: no tax code"), s("unknown uom kg")] }),
        JournalBody::ReservationRequested(Empty {}),
        JournalBody::StockAllocated(Allocation { lines: line_reservations() }),
        JournalBody::Backordered(Backorder {
            lines: vec![BackorderLine { line_no: 2, sku: s("BOLT-M8"), quantity: Qty(1500) }],
        }),
        JournalBody::ReleaseRequested(ReleaseRequested { due_at: T0.plus_secs(7200.0) }),
        JournalBody::WarehouseAccepted(WarehouseAccepted { wms_order_id: s("WAVE-9") }),
        JournalBody::PickRecorded(pick_confirmed()),
        JournalBody::PickOverdue(Deadline { due_at: T0.plus_secs(7200.0) }),
        JournalBody::ShipmentRecorded(goods_issued()),
        JournalBody::CarrierAssigned(CarrierAssigned {
            shipment_id: s("SHP-1"),
            carrier: s("DHL"),
            tracking_ref: s("JD0142"),
        }),
        JournalBody::DeliveryConfirmed(DeliveryConfirmed { shipment_id: s("SHP-1"), signed_by: Some(s("J. Smith")) }),
        JournalBody::Cancelled(Cancelled {
            reason: s("customer request"),
            compensations: vec![s("cancel-reservation:SO0042")],
        }),
        JournalBody::ExceptionRaised(ExceptionRaised {
            exception_id: s("o2f:SO0042/master-data/1"),
            category: ExceptionCategory::MasterData,
            message: s("line 2 has no tax code; fix the product in Odoo and retry"),
            subject: SourceRef::new(System::Odoo, "SO0042"),
            entity: Some(s("acme-de")),
        }),
        JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: s("o2f:SO0042/master-data/1"),
            resolution: s("tax code added"),
        }),
        JournalBody::Completed(Empty::default()),
        JournalBody::InvoiceDrafted(invoice_draft()),
        JournalBody::PostingHeld(PostingHeld {
            posting_id: s("inv:SHP-1"),
            document: DocumentKind::Invoice,
            business_key: s("SHP-1"),
            reasons: vec![s("amount 6000.00 above the approval limit 5000.00")],
            amount: Money(600_000),
            version: 1,
            requested_by: s("wms"),
            sla_due_at: T0.plus_secs(86_400.0),
            entity: Some(s("acme-de")),
            currency: Some(s("EUR")),
        }),
        JournalBody::PostingApproved(posting_outcome()),
        JournalBody::PostingRejected(posting_outcome()),
        JournalBody::PostingEscalated(Deadline { due_at: T0.plus_secs(86_400.0) }),
        JournalBody::ControlRefused(ControlRefusal {
            posting_id: s("inv:SHP-1"),
            action: s("approve"),
            actor: s("bob@example.com"),
            reason: s("four-eyes: bob requested it"),
        }),
        JournalBody::InvoiceRequested(Empty {}),
        JournalBody::InvoiceRecorded(InvoiceRecorded { document_number: s("INV/2026/0042"), amount: Money(600_000) }),
        JournalBody::FinanceRefused(Refusal { reason: s("period closed"), business_key: Some(s("SHP-1")) }),
        JournalBody::ReturnOpened(match &event_bodies()[12] {
            EventBody::ReturnAuthorized(r) => r.clone(),
            _ => unreachable!("event_bodies() is in declaration order"),
        }),
        JournalBody::ReturnReceiptRecorded(match &event_bodies()[13] {
            EventBody::ReturnReceived(r) => r.clone(),
            _ => unreachable!("event_bodies() is in declaration order"),
        }),
        JournalBody::CreditNoteDrafted(CreditNoteDraft {
            order_ref: s("SO0042"),
            receipt_id: s("RCPT-1"),
            invoice_number: s("INV/2026/0042"),
            lines: invoice_lines(),
            restocking_fee: Money(200),
            total: Money(1799),
        }),
        JournalBody::CreditNoteRequested(BusinessKey { key: s("RCPT-1") }),
        JournalBody::CreditNoteRecorded(CreditNoteRecorded {
            receipt_id: s("RCPT-1"),
            document_number: s("RINV/2026/0007"),
            amount: Money(1799),
        }),
        JournalBody::StockAdjustmentRequested(BusinessKey { key: s("RCPT-1") }),
        JournalBody::ExceptionRetried(ExceptionRetried {
            exception_id: s("o2f:SO0042/pick-overdue/1"),
            idempotency_key: s("release:SO0042"),
            actor: s("olga@example.com"),
            role: s("operator"),
            note: s("warehouse lost the wave"),
        }),
        JournalBody::SagaReplayed(SagaReplayed {
            saga_id: s("o2f:SO0042"),
            actor: s("olga@example.com"),
            role: s("operator"),
            inputs: 5,
            applied: 1,
            commands: vec![s("confirm-shipment:SHP-1")],
            refused: vec![s("waybill.inbound.carrier/3@9: carrier booking for an unknown shipment")],
        }),
        JournalBody::ExceptionAssigned(ExceptionAssigned {
            exception_id: s("o2f:SO0042/pick-overdue/1"),
            owner: s("wh-leads-w1"),
            previous_owner: Some(s("olga@example.com")),
            actor: s("olga@example.com"),
            role: s("operator"),
            note: s("W1 shift lead chases the pick"),
        }),
        JournalBody::PurchaseOpened(purchase_order()),
        JournalBody::PurchaseClosed(PurchaseOrderClosed { po_ref: s("P00042"), reason: s("rest cancelled") }),
        JournalBody::ShipNoticeRecorded(ship_notice()),
        JournalBody::ReceiptRecorded(GoodsReceipt { asn_id: None, ..goods_receipt() }),
        JournalBody::ReceiptConfirmed(ReceiptValidated {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            picking_ref: s("WH/IN/00012"),
        }),
        JournalBody::ReceiptReversed(ReceiptReversal {
            receipt_id: s("RCV-P42-1"),
            reason: s("wrong goods delivered"),
            credit: Some(vendor_credit()),
        }),
        JournalBody::BillReceived(vendor_bill()),
        JournalBody::BillMatched(BillMatch {
            bill_number: s("AF-2026-118"),
            variances: vec![s("line 1: price 8.90 is 4.7 % above the order's 8.50 (tolerance 2 %)")],
        }),
        JournalBody::BillRecorded(VendorBillPosted {
            po_ref: s("P00042"),
            bill_number: s("AF-2026-118"),
            document_number: s("BILL/2026/0042"),
            amount: Money(91_050),
        }),
        JournalBody::VendorCreditRecorded(VendorCreditIssued {
            po_ref: s("P00042"),
            receipt_id: s("RCV-P42-1"),
            credit_number: s("RBILL/2026/0003"),
            amount: Money(91_050),
        }),
        JournalBody::StatementOpened(Box::new(statement())),
        JournalBody::LineApplied(StatementEntry { booking_date: None, counterparty: None, ..statement_entry() }),
        JournalBody::LineRecorded(line_posted()),
        JournalBody::ApplicationScheduled(Deadline { due_at: T0.plus_secs(3_600.0) }),
        JournalBody::StockReconciled(StockReconciliation {
            run_id: s("stock-20261201T0900"),
            outcome: ReconcileOutcome::Mismatch,
            on_hand: Qty(118_000),
            journaled: movements(),
            expected: Qty(120_000),
            wms_last_movement: Some(s("SHP-1")),
            journal_last_movement: None,
        }),
        JournalBody::FlowRetired(FlowRetired { finished_at: T0.plus_secs(60.0), retention_secs: 400 * 86_400 }),
    ];
    for body in &bodies {
        match body {
            JournalBody::OrderAccepted(_)
            | JournalBody::MasterDataFailed(_)
            | JournalBody::ReservationRequested(_)
            | JournalBody::StockAllocated(_)
            | JournalBody::Backordered(_)
            | JournalBody::ReleaseRequested(_)
            | JournalBody::WarehouseAccepted(_)
            | JournalBody::PickRecorded(_)
            | JournalBody::PickOverdue(_)
            | JournalBody::ShipmentRecorded(_)
            | JournalBody::CarrierAssigned(_)
            | JournalBody::DeliveryConfirmed(_)
            | JournalBody::Cancelled(_)
            | JournalBody::ExceptionRaised(_)
            | JournalBody::ExceptionResolved(_)
            | JournalBody::Completed(_)
            | JournalBody::InvoiceDrafted(_)
            | JournalBody::PostingHeld(_)
            | JournalBody::PostingApproved(_)
            | JournalBody::PostingRejected(_)
            | JournalBody::PostingEscalated(_)
            | JournalBody::ControlRefused(_)
            | JournalBody::InvoiceRequested(_)
            | JournalBody::InvoiceRecorded(_)
            | JournalBody::FinanceRefused(_)
            | JournalBody::ReturnOpened(_)
            | JournalBody::ReturnReceiptRecorded(_)
            | JournalBody::CreditNoteDrafted(_)
            | JournalBody::CreditNoteRequested(_)
            | JournalBody::CreditNoteRecorded(_)
            | JournalBody::StockAdjustmentRequested(_)
            | JournalBody::ExceptionRetried(_)
            | JournalBody::SagaReplayed(_)
            | JournalBody::ExceptionAssigned(_)
            | JournalBody::PurchaseOpened(_)
            | JournalBody::PurchaseClosed(_)
            | JournalBody::ShipNoticeRecorded(_)
            | JournalBody::ReceiptRecorded(_)
            | JournalBody::ReceiptConfirmed(_)
            | JournalBody::ReceiptReversed(_)
            | JournalBody::BillReceived(_)
            | JournalBody::BillMatched(_)
            | JournalBody::BillRecorded(_)
            | JournalBody::VendorCreditRecorded(_)
            | JournalBody::StatementOpened(_)
            | JournalBody::LineApplied(_)
            | JournalBody::LineRecorded(_)
            | JournalBody::ApplicationScheduled(_)
            | JournalBody::StockReconciled(_)
            | JournalBody::FlowRetired(_) => {}
        }
    }
    bodies
        .into_iter()
        .zip(1..)
        .map(|(body, seq)| JournalEvent {
            meta: JournalMeta {
                saga_id: SagaKind::OrderToFulfillment.saga_id("SO0042"),
                // Records every saga writes take each kind in turn (the procure-to-receive
                // kind only where the record's latest schema has it); its own records, its own.
                kind: if seq as usize > PRE_RECONCILIATION_JOURNAL {
                    SagaKind::Reconciliation
                } else if seq as usize > PRE_CASH_JOURNAL {
                    SagaKind::CashApplication
                } else if seq as usize > PRE_PURCHASE_JOURNAL {
                    SagaKind::PurchaseToReceive
                } else {
                    [
                        SagaKind::OrderToFulfillment,
                        SagaKind::ShipToInvoice,
                        SagaKind::ReturnsCredit,
                        SagaKind::TargetHealth,
                    ][seq as usize % 4]
                },
                seq,
                correlation_key: s("SO0042"),
                caused_by: format!("evt-{seq}"),
                input: Some(InputPosition { topic: s("waybill.inbound.odoo"), partition: 3, offset: 1000 + seq }),
                at: Timestamp(T0.0 + seq),
            },
            body,
        })
        .collect()
}

/// The journal variants declared before procure-to-receive's.
const PRE_PURCHASE_JOURNAL: usize = 34;
/// The journal variants declared before cash application's.
const PRE_CASH_JOURNAL: usize = 44;
/// The journal variants declared before reconciliation's.
const PRE_RECONCILIATION_JOURNAL: usize = 47;

/// A checkpoint covering two input topics.
pub fn checkpoint() -> Checkpoint {
    Checkpoint {
        partition: 3,
        positions: vec![
            InputPosition { topic: s("waybill.inbound.odoo"), partition: 3, offset: 1017 },
            InputPosition { topic: s("waybill.control"), partition: 3, offset: 0 },
        ],
        at: T0,
        journal_from: Some(2040),
        journal_until: Some(2046),
    }
}
