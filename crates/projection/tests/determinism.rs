//! Byte-identical rebuild: the store's contents depend only on the set of records, not on
//! batch boundaries or on how partitions interleave.

mod common;

use common::*;
use waybill_domain::ExceptionCategory;

#[test]
fn any_interleaving_and_batching_gives_the_same_bytes() {
    let s = scenario(120);
    let (_d0, reference) = temp_store();
    apply_in_batches(&reference, &s.sequential(), &[usize::MAX]);
    let want = reference.dump().unwrap();
    assert!(want.len() > 1000, "the scenario fills the store ({} keys)", want.len());

    let runs: Vec<(Vec<waybill_projection::Positioned>, Vec<usize>)> = vec![
        (s.sequential(), vec![1]),
        (s.sequential().into_iter().rev().collect::<Vec<_>>().into_iter().rev().collect(), vec![7, 1, 64]),
        (
            {
                // Partitions in reverse order, each whole.
                let mut v = Vec::new();
                for recs in s.partitions.values().rev() {
                    v.extend(recs.iter().cloned());
                }
                v
            },
            vec![13],
        ),
        (interleaved(&s, 1), vec![1000]),
        (interleaved(&s, 42), vec![3, 17, 1, 250]),
        (interleaved(&s, 7_777), vec![2]),
    ];
    for (i, (records, sizes)) in runs.into_iter().enumerate() {
        let (_d, store) = temp_store();
        apply_in_batches(&store, &records, &sizes);
        let got = store.dump().unwrap();
        if got != want {
            let diff = want.iter().zip(&got).find(|(a, b)| a != b);
            panic!(
                "run {i}: {} keys vs {} in the reference; first difference: {:?}",
                got.len(),
                want.len(),
                diff.map(|(a, b)| (
                    String::from_utf8_lossy(&a.0).into_owned(),
                    String::from_utf8_lossy(&b.0).into_owned(),
                    String::from_utf8_lossy(&a.1).into_owned(),
                    String::from_utf8_lossy(&b.1).into_owned()
                ))
            );
        }
    }
}

#[test]
fn a_dead_letter_resolved_before_it_is_seen_ends_up_resolved() {
    let s = scenario(20);
    // Order 1's journal resolves dead letter dlq:...:1; apply the journal first, then
    // the DLQ, and the other way round.
    let journal_first: Vec<_> = s.sequential();
    let mut dlq_first: Vec<_> = s.sequential().into_iter().filter(|p| p.position.topic == "waybill.dlq").collect();
    dlq_first.extend(s.sequential().into_iter().filter(|p| p.position.topic != "waybill.dlq"));
    let (_a, a) = temp_store();
    let (_b, b) = temp_store();
    a.apply(&journal_first).unwrap();
    b.apply(&dlq_first).unwrap();
    assert_eq!(a.dump().unwrap(), b.dump().unwrap());
    let x = a.exception("dlq:waybill.inbound.wms:0:1").unwrap().unwrap();
    assert_eq!(x.category, ExceptionCategory::BadInput);
    assert!(x.raised_at.is_some() && x.resolved_at.is_some());
    assert!(!a.exceptions(true, None).unwrap().iter().any(|x| x.exception_id == "dlq:waybill.inbound.wms:0:1"));
    // Order 18's dead letter was written twice and is never resolved: open once.
    let open_bad = a.exceptions(true, Some(ExceptionCategory::BadInput)).unwrap();
    assert_eq!(open_bad.iter().filter(|x| x.exception_id == "dlq:waybill.inbound.wms:0:18").count(), 1);
    let counted = a.exception_counts_by_category().unwrap();
    let bad = counted.iter().find(|(c, _)| *c == ExceptionCategory::BadInput).unwrap().1;
    assert_eq!(bad as usize, open_bad.len());
}
