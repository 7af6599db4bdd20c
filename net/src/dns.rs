//! The DNS messages the VMM answers itself (RFC 1035).
//!
//! The guest's resolver points at the gateway; the VMM parses each query,
//! asks the policy about the name, and answers with a synthetic address
//! (A), nothing (AAAA: the guest network is IPv4 only), or an error. The
//! bytes come from the guest, so everything here is bounded and checked:
//! one question, no compression pointers in it, names of printable ASCII.
//! Only the question is read; what follows it (an EDNS OPT record, say)
//! is ignored, and replies never carry EDNS.

use std::net::Ipv4Addr;

/// Largest message accepted from the guest (one Ethernet MTU of UDP
/// payload is more than any single-question query needs).
pub const MAX_MESSAGE: usize = 1500;
/// Record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN (the Internet).
pub const CLASS_IN: u16 = 1;

/// Header length: id, flags, four counts.
const HEADER_LEN: usize = 12;
/// Replies stay within plain DNS over UDP, which needs no EDNS.
const MAX_REPLY: usize = 512;
/// An A record pointing back at the question's name: pointer (2), type
/// (2), class (2), TTL (4), data length (2), address (4).
const A_RECORD_LEN: usize = 16;
/// Where the question's name starts, as a compression pointer.
const POINTER_TO_QUESTION: [u8; 2] = [0xC0, HEADER_LEN as u8];
/// Longest name in text form, without the trailing dot.
const MAX_NAME: usize = 253;

const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// One question from the guest, checked and ready to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query id, echoed in the reply.
    pub id: u16,
    /// The name asked for: lowercase, without a trailing dot, never empty.
    pub name: String,
    /// The record type asked for ([`TYPE_A`], [`TYPE_AAAA`], ...).
    pub qtype: u16,
    /// The class asked for (normally [`CLASS_IN`]).
    pub qclass: u16,
    /// Whether the guest asked for recursion (copied into the reply).
    pub recursion_desired: bool,
    /// The question exactly as received (name, type, class), echoed in
    /// replies so the guest's resolver recognizes them, case included.
    question: Vec<u8>,
}

/// Response codes the VMM sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// The answer (possibly empty) is in the reply.
    NoError = 0,
    /// The query could not be understood.
    FormErr = 1,
    /// The VMM could not get an answer (the host's resolver failed).
    ServFail = 2,
    /// The name does not exist, or the policy hides it.
    NxDomain = 3,
    /// The kind of query is not supported.
    NotImp = 4,
    /// The VMM will not answer this query.
    Refused = 5,
}

/// Why a guest message is not a query the VMM can answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// The message is longer than [`MAX_MESSAGE`].
    #[error("DNS message is longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// The message ends inside its header or question.
    #[error("DNS message ends inside its header or question")]
    Truncated,
    /// The message is a response; the VMM never answers one.
    #[error("DNS message is a response, not a query")]
    NotAQuery,
    /// The opcode is not QUERY (answer NOTIMP).
    #[error("DNS opcode is not QUERY; only standard queries are answered")]
    NotImplemented,
    /// The question's name is malformed.
    #[error("DNS question has a bad name: {0}")]
    BadName(String),
    /// The message does not hold exactly one question.
    #[error("DNS message has {0} questions; exactly one is supported")]
    QuestionCount(u16),
    /// The query carries answer or authority records, which queries never
    /// need.
    #[error("DNS query carries answer or authority records")]
    UnexpectedRecords,
}

impl DnsError {
    /// The rcode to reply with (through [`error_for_raw`]), or `None`
    /// when the message must not be answered at all.
    pub fn rcode(&self) -> Option<Rcode> {
        match self {
            DnsError::NotAQuery => None,
            DnsError::NotImplemented => Some(Rcode::NotImp),
            _ => Some(Rcode::FormErr),
        }
    }
}

/// Parses a guest's DNS query: a standard query with exactly one
/// question and no answer or authority records. Additional records (an
/// EDNS OPT record) and anything after the question are ignored.
pub fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    if msg.len() > MAX_MESSAGE {
        return Err(DnsError::TooLong);
    }
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Truncated);
    }
    let flags = be16(msg, 2);
    if flags & FLAG_QR != 0 {
        return Err(DnsError::NotAQuery);
    }
    if flags & OPCODE_MASK != 0 {
        return Err(DnsError::NotImplemented);
    }
    match be16(msg, 4) {
        1 => {}
        count => return Err(DnsError::QuestionCount(count)),
    }
    if be16(msg, 6) != 0 || be16(msg, 8) != 0 {
        return Err(DnsError::UnexpectedRecords);
    }
    let (name, name_end) = parse_name(msg, HEADER_LEN)?;
    let question_end = name_end + 4;
    if msg.len() < question_end {
        return Err(DnsError::Truncated);
    }
    Ok(Query {
        id: be16(msg, 0),
        name,
        qtype: be16(msg, name_end),
        qclass: be16(msg, name_end + 2),
        recursion_desired: flags & FLAG_RD != 0,
        question: msg[HEADER_LEN..question_end].to_vec(),
    })
}

/// Reads the uncompressed name at `start`; returns it (lowercase, dotted)
/// and the offset just past it.
///
/// Label bytes must be printable ASCII other than '.', so the text name
/// means the same to the policy and to the host's resolver (no NUL to
/// cut it short, no dot to split a label in two).
fn parse_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let bad = |why: &str| Err(DnsError::BadName(why.to_string()));
    let mut name = String::new();
    let mut pos = start;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        pos += 1;
        match len & 0xC0 {
            0 => {}
            0xC0 => return bad("it uses a compression pointer, which a question never needs"),
            _ => return bad("a label is longer than 63 bytes"),
        }
        if len == 0 {
            break;
        }
        let label = msg
            .get(pos..pos + usize::from(len))
            .ok_or(DnsError::Truncated)?;
        pos += label.len();
        if let Some(byte) = label.iter().find(|b| !is_label_byte(**b)) {
            return Err(DnsError::BadName(format!(
                "byte {byte:#04x} in a label (printable ASCII other than '.' only)"
            )));
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        if name.len() > MAX_NAME {
            return bad("it is longer than 253 characters");
        }
    }
    if name.is_empty() {
        return bad("it is the root, which names no host");
    }
    Ok((name, pos))
}

fn is_label_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && byte != b'.'
}

/// The reply to `q` with one A record per address (at most what fits in
/// 512 bytes; a client needs one), each `ttl` seconds long. No addresses
/// is NODATA: the name exists, without records of this type (the answer
/// to AAAA queries).
pub fn answer(q: &Query, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let room = MAX_REPLY.saturating_sub(HEADER_LEN + q.question.len()) / A_RECORD_LEN;
    let addrs = &addrs[..addrs.len().min(room)];
    // RFC 2181: a TTL has 31 bits.
    let ttl = ttl.min(i32::MAX.unsigned_abs());
    let mut reply = reply_to(q, Rcode::NoError, addrs.len());
    for addr in addrs {
        reply.extend_from_slice(&POINTER_TO_QUESTION);
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&ttl.to_be_bytes());
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&addr.octets());
    }
    reply
}

/// The reply to `q` with `rcode` and no records.
pub fn error(q: &Query, rcode: Rcode) -> Vec<u8> {
    reply_to(q, rcode, 0)
}

/// A header-only reply (no question) with `rcode`, for a message
/// [`parse_query`] refused: the guest's resolver learns at once instead
/// of timing out. `None` when `msg` is shorter than a header or is itself
/// a response (answering responses could make two resolvers loop).
pub fn error_for_raw(msg: &[u8], rcode: Rcode) -> Option<Vec<u8>> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let flags = be16(msg, 2);
    if flags & FLAG_QR != 0 {
        return None;
    }
    let flags = FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode as u16;
    let mut reply = Vec::with_capacity(HEADER_LEN);
    reply.extend_from_slice(&msg[..2]);
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&[0; 8]);
    Some(reply)
}

/// The header and echoed question of a reply to `q` announcing `answers`
/// records (which the caller appends).
fn reply_to(q: &Query, rcode: Rcode, answers: usize) -> Vec<u8> {
    let rd = if q.recursion_desired { FLAG_RD } else { 0 };
    let flags = FLAG_QR | rd | FLAG_RA | rcode as u16;
    let answers = u16::try_from(answers).unwrap_or(u16::MAX);
    let mut reply = Vec::with_capacity(MAX_REPLY);
    reply.extend_from_slice(&q.id.to_be_bytes());
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&answers.to_be_bytes());
    reply.extend_from_slice(&[0; 4]);
    reply.extend_from_slice(&q.question);
    reply
}

/// The big-endian u16 at `at`; the caller checked the length.
fn be16(msg: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([msg[at], msg[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What glibc's resolver sends for `getent ahostsv4 example.com`.
    fn glibc_query() -> Vec<u8> {
        let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(b"\x07example\x03com\x00");
        msg.extend_from_slice(&[0, 1, 0, 1]);
        msg
    }

    /// The same with an EDNS OPT record (`options edns0`, or dig).
    fn edns_query() -> Vec<u8> {
        let mut msg = glibc_query();
        msg[11] = 1;
        msg.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        msg
    }

    fn query_for(labels: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut msg = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in labels {
            msg.push(label.len() as u8);
            msg.extend_from_slice(label);
        }
        msg.push(0);
        msg.extend_from_slice(&qtype.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        msg
    }

    /// A reply as a test sees it.
    #[derive(Debug, PartialEq)]
    struct Reply {
        id: u16,
        flags: u16,
        questions: u16,
        question: Option<(String, u16, u16)>,
        addrs: Vec<(Ipv4Addr, u32)>,
    }

    /// Reads replies this module writes: at most one question, then A
    /// records whose names point back at it.
    fn read_reply(msg: &[u8]) -> Reply {
        assert!(msg.len() <= MAX_REPLY, "reply is {} bytes", msg.len());
        let questions = be16(msg, 4);
        let mut pos = HEADER_LEN;
        let question = (questions == 1).then(|| {
            let (name, end) = parse_name(msg, HEADER_LEN).unwrap();
            pos = end + 4;
            (name, be16(msg, end), be16(msg, end + 2))
        });
        assert_eq!(&msg[8..12], &[0; 4], "authority and additional counts");
        let addrs = (0..be16(msg, 6))
            .map(|_| {
                let record = &msg[pos..pos + A_RECORD_LEN];
                pos += A_RECORD_LEN;
                assert_eq!(
                    &record[..6],
                    &[0xC0, 12, 0, 1, 0, 1],
                    "pointer, type A, class IN"
                );
                assert_eq!(be16(record, 10), 4);
                let ttl = u32::from_be_bytes(record[6..10].try_into().unwrap());
                let addr = Ipv4Addr::new(record[12], record[13], record[14], record[15]);
                (addr, ttl)
            })
            .collect();
        assert_eq!(pos, msg.len(), "trailing bytes");
        Reply {
            id: be16(msg, 0),
            flags: be16(msg, 2),
            questions,
            question,
            addrs,
        }
    }

    /// A small deterministic generator (xorshift64*), so failures repeat.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn parses_what_glibc_sends() {
        for msg in [glibc_query(), edns_query()] {
            let q = parse_query(&msg).unwrap();
            assert_eq!(q.id, 0x1234);
            assert_eq!(q.name, "example.com");
            assert_eq!(q.qtype, TYPE_A);
            assert_eq!(q.qclass, CLASS_IN);
            assert!(q.recursion_desired);
        }
    }

    #[test]
    fn names_are_lowercased_and_the_question_is_echoed_as_sent() {
        let msg = query_for(&[b"WWW", b"Example", b"COM"], TYPE_AAAA);
        let q = parse_query(&msg).unwrap();
        assert_eq!(q.name, "www.example.com");
        assert_eq!(q.qtype, TYPE_AAAA);
        let reply = error(&q, Rcode::NxDomain);
        assert_eq!(&reply[HEADER_LEN..], &msg[HEADER_LEN..]);
    }

    #[test]
    fn answers_parse_back() {
        let q = parse_query(&edns_query()).unwrap();
        let addrs = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
        let reply = read_reply(&answer(&q, &addrs, 60));
        assert_eq!(
            reply,
            Reply {
                id: 0x1234,
                flags: 0x8180,
                questions: 1,
                question: Some(("example.com".into(), TYPE_A, CLASS_IN)),
                addrs: vec![(addrs[0], 60), (addrs[1], 60)],
            }
        );
    }

    #[test]
    fn an_answer_without_addresses_is_nodata() {
        let q = parse_query(&query_for(&[b"example", b"com"], TYPE_AAAA)).unwrap();
        let reply = read_reply(&answer(&q, &[], 60));
        assert_eq!(reply.flags & 0x000F, Rcode::NoError as u16);
        assert_eq!(reply.question.unwrap().1, TYPE_AAAA);
        assert!(reply.addrs.is_empty());
    }

    #[test]
    fn recursion_desired_is_copied() {
        let mut msg = glibc_query();
        msg[2] = 0;
        let q = parse_query(&msg).unwrap();
        assert!(!q.recursion_desired);
        assert_eq!(read_reply(&answer(&q, &[], 1)).flags, 0x8080);
    }

    #[test]
    fn answers_stay_within_512_bytes_and_31_bit_ttls() {
        let longest: Vec<&[u8]> = vec![&[b'a'; 63], &[b'b'; 63], &[b'c'; 63], &[b'd'; 61]];
        let q = parse_query(&query_for(&longest, TYPE_A)).unwrap();
        assert_eq!(q.name.len(), 253);
        let addrs = vec![Ipv4Addr::new(198, 18, 0, 1); 100];
        let reply = read_reply(&answer(&q, &addrs, u32::MAX));
        assert_eq!(reply.addrs.len(), (512 - 12 - 259) / 16);
        assert!(reply.addrs.iter().all(|(_, ttl)| *ttl == 0x7fff_ffff));
    }

    #[test]
    fn errors_echo_the_question() {
        let q = parse_query(&glibc_query()).unwrap();
        for rcode in [Rcode::NxDomain, Rcode::ServFail, Rcode::Refused] {
            let reply = read_reply(&error(&q, rcode));
            assert_eq!(reply.flags, 0x8180 | rcode as u16);
            assert_eq!(reply.question.unwrap().0, "example.com");
            assert!(reply.addrs.is_empty());
        }
    }

    #[test]
    fn raw_errors_answer_queries_only() {
        let mut notify = glibc_query();
        notify[2] = 0x21; // opcode NOTIFY (4), RD
        assert_eq!(parse_query(&notify), Err(DnsError::NotImplemented));
        let rcode = DnsError::NotImplemented.rcode().unwrap();
        let reply = read_reply(&error_for_raw(&notify, rcode).unwrap());
        assert_eq!(reply.id, 0x1234);
        assert_eq!(reply.flags, 0x8000 | 0x2000 | 0x0100 | 0x0080 | 4);
        assert_eq!(reply.questions, 0);

        let response = answer(&parse_query(&glibc_query()).unwrap(), &[], 1);
        assert_eq!(parse_query(&response), Err(DnsError::NotAQuery));
        assert_eq!(DnsError::NotAQuery.rcode(), None);
        assert_eq!(error_for_raw(&response, Rcode::FormErr), None);
        assert_eq!(error_for_raw(&glibc_query()[..11], Rcode::FormErr), None);
    }

    #[test]
    fn header_counts_are_checked() {
        let mut two = glibc_query();
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(DnsError::QuestionCount(2)));
        let mut none = glibc_query();
        none[5] = 0;
        assert_eq!(parse_query(&none), Err(DnsError::QuestionCount(0)));
        let mut answers = glibc_query();
        answers[7] = 1;
        assert_eq!(parse_query(&answers), Err(DnsError::UnexpectedRecords));
        let mut authority = glibc_query();
        authority[9] = 1;
        assert_eq!(parse_query(&authority), Err(DnsError::UnexpectedRecords));
        assert_eq!(DnsError::QuestionCount(2).rcode(), Some(Rcode::FormErr));
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut msg = edns_query();
        msg.resize(MAX_MESSAGE, 0);
        assert!(parse_query(&msg).is_ok());
        msg.push(0);
        assert_eq!(parse_query(&msg), Err(DnsError::TooLong));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let msg = glibc_query();
        for len in 0..msg.len() {
            assert_eq!(
                parse_query(&msg[..len]),
                Err(DnsError::Truncated),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let bad = |msg: &[u8]| matches!(parse_query(msg), Err(DnsError::BadName(_)));
        assert!(bad(&query_for(&[&[b'a'; 64], b"com"], TYPE_A)));
        assert!(bad(&query_for(&[], TYPE_A)), "the root");
        assert!(bad(&query_for(&[b"a.b", b"com"], TYPE_A)), "dot in a label");
        assert!(bad(&query_for(&[b"a\0b", b"com"], TYPE_A)), "NUL");
        assert!(bad(&query_for(&[b"a b", b"com"], TYPE_A)), "space");
        assert!(
            bad(&query_for(&["é".as_bytes(), b"com"], TYPE_A)),
            "non-ASCII"
        );
        let too_long: Vec<&[u8]> = vec![&[b'a'; 63], &[b'b'; 63], &[b'c'; 63], &[b'd'; 62]];
        assert!(bad(&query_for(&too_long, TYPE_A)), "254 characters");
    }

    #[test]
    fn compression_pointers_and_their_loops_are_refused() {
        let mut to_itself = glibc_query();
        to_itself.truncate(HEADER_LEN);
        to_itself.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        let mut after_a_label = glibc_query();
        after_a_label.truncate(HEADER_LEN);
        after_a_label.extend_from_slice(&[1, b'a', 0xC0, 12, 0, 1, 0, 1]);
        for msg in [to_itself, after_a_label] {
            let err = parse_query(&msg).unwrap_err();
            assert!(
                matches!(&err, DnsError::BadName(why) if why.contains("pointer")),
                "{err}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let len = rng.below(80);
            let msg: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&msg);
        }
    }

    #[test]
    fn mutated_queries_never_panic() {
        let mut rng = XorShift(42);
        let seeds = [glibc_query(), edns_query()];
        for round in 0..5000 {
            let mut msg = seeds[round % 2].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(msg.len());
                msg[at] = rng.next() as u8;
            }
            msg.truncate(rng.below(msg.len() + 1).max(HEADER_LEN));
            exercise(&msg);
        }
    }

    /// Runs a message through everything a VMM would do with it.
    fn exercise(msg: &[u8]) {
        match parse_query(msg) {
            Ok(q) => {
                assert!(!q.name.is_empty() && q.name.len() <= MAX_NAME);
                read_reply(&answer(&q, &[Ipv4Addr::new(198, 18, 0, 1)], 5));
                read_reply(&error(&q, Rcode::NxDomain));
            }
            Err(err) => {
                if let Some(reply) = err.rcode().and_then(|rcode| error_for_raw(msg, rcode)) {
                    assert_eq!(reply.len(), HEADER_LEN);
                }
            }
        }
    }
}
