//! The worker-to-master pipe: the records a worker writes to its master (one
//! non-blocking write each) and their decoding, and the request count at which a
//! worker is due for recycling. The worker side ([`send_ready`], [`send_due`]) runs in
//! the worker and its request path; the master reads with `decode`.

use std::os::fd::{BorrowedFd, RawFd};

use rsgi_proto::config::VassalConfig;

use crate::shm::WorkerId;

/// The record a worker writes on the ready pipe: `b'R'`, then its id (u32 LE).
const READY: u8 = b'R';
/// The record a worker writes when its `max-requests` is reached: `b'M'` + id. It only
/// wakes the master, whose recycling check then sees the count in the shared counters.
const DUE: u8 = b'M';
/// The size of one record.
pub(crate) const RECORD_LEN: usize = 5;

/// One record read from the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// The worker in this slot accepts.
    Ready(u32),
    /// The worker in this slot reached `max-requests`.
    Due(u32),
    /// An unknown kind (ignored).
    Unknown,
}

/// Decode whole records from `bytes` (a trailing partial record is dropped, as the
/// master always did: records are written whole, atomically, by one `write`).
pub(crate) fn decode(bytes: &[u8]) -> impl Iterator<Item = Record> + '_ {
    bytes.chunks_exact(RECORD_LEN).map(|rec| {
        let id = u32::from_le_bytes([rec[1], rec[2], rec[3], rec[4]]);
        match rec[0] {
            READY => Record::Ready(id),
            DUE => Record::Due(id),
            _ => Record::Unknown,
        }
    })
}

fn encode(kind: u8, id: WorkerId) -> [u8; RECORD_LEN] {
    let mut rec = [kind, 0, 0, 0, 0];
    rec[1..].copy_from_slice(&id.get().to_le_bytes());
    rec
}

/// Tell the master this worker accepts (called by the worker once its accept loops
/// run).
pub fn send_ready(fd: RawFd, id: WorkerId) {
    send_record(fd, encode(READY, id));
}

/// Tell the master this worker reached `max-requests` (called once, from the request
/// path: one non-blocking write).
pub fn send_due(fd: RawFd, id: WorkerId) {
    send_record(fd, encode(DUE, id));
}

fn send_record(fd: RawFd, rec: [u8; RECORD_LEN]) {
    // SAFETY: fd is the inherited write end of the master's pipe, open for the life of
    // this process; we only borrow it for the write.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = nix::unistd::write(fd, &rec);
}

/// The request count at which worker `id` is recycled: `max-requests`, staggered by
/// `max-requests-delta` per worker id.
pub(crate) fn recycle_after(config: &VassalConfig, id: WorkerId) -> Option<u64> {
    recycle_limit(config.max_requests, config.max_requests_delta, id)
}

/// [`recycle_after`] from the two settings: `max + delta * id`.
pub(crate) fn recycle_limit(max: Option<u64>, delta: u64, id: WorkerId) -> Option<u64> {
    max.map(|m| m + delta * u64::from(id.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> WorkerId {
        WorkerId::new(n).expect("nonzero id")
    }

    #[test]
    fn records_round_trip_and_partial_ones_are_dropped() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&encode(READY, id(3)));
        bytes.extend_from_slice(&encode(DUE, id(70_000)));
        bytes.extend_from_slice(&[b'X', 1, 0, 0, 0]);
        bytes.extend_from_slice(&[READY, 9]);
        let got: Vec<Record> = decode(&bytes).collect();
        assert_eq!(
            got,
            [Record::Ready(3), Record::Due(70_000), Record::Unknown]
        );
    }

    #[test]
    fn recycle_after_staggers_by_the_delta() {
        let mut config = VassalConfig::default();
        assert_eq!(recycle_after(&config, id(1)), None);
        config.max_requests = Some(100);
        config.max_requests_delta = 5;
        assert_eq!(recycle_after(&config, id(1)), Some(105));
        assert_eq!(recycle_after(&config, id(4)), Some(120));
    }
}
