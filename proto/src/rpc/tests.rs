//! Frames, workspace paths and streamed listings: round trips, limits,
//! and hostile input.

use super::*;

#[test]
fn frames_round_trip_with_binary_data() {
    let mut buf = Vec::new();
    let data: Vec<u8> = (0..=255).collect();
    write_frame(
        &mut buf,
        &Event::Output {
            stream: Stream::Stderr,
        },
        &data,
    )
    .unwrap();
    write_frame(&mut buf, &Request::Ping, &[]).unwrap();
    let mut r = &buf[..];
    let (e, d): (Event, Vec<u8>) = read_frame(&mut r).unwrap().unwrap();
    assert_eq!(
        (e, d),
        (
            Event::Output {
                stream: Stream::Stderr
            },
            data
        )
    );
    let (req, _): (Request, Vec<u8>) = read_frame(&mut r).unwrap().unwrap();
    assert_eq!(req, Request::Ping);
    assert!(read_frame::<Request>(&mut r).unwrap().is_none());
}

#[test]
fn workspace_paths_resolve_inside_or_are_refused() {
    for (given, rel) in [
        ("", ""),
        (".", ""),
        ("/workspace", ""),
        ("/workspace/", ""),
        ("src/main.rs", "src/main.rs"),
        ("./src//main.rs/", "src/main.rs"),
        ("/workspace/a/./b", "a/b"),
        ("a/.pyro-staging", "a/.pyro-staging"),
        (".pyro-staging-not", ".pyro-staging-not"),
    ] {
        assert_eq!(workspace_relative(given).as_deref(), Ok(rel), "{given}");
    }
    for bad in [
        "/etc/passwd",
        "/workspacex/a",
        "/",
        "..",
        "a/../b",
        "/workspace/../etc",
        "a\0b",
        ".pyro-staging",
        "/workspace/.pyro-staging/x",
        "./.pyro-staging/",
    ] {
        let err = workspace_relative(bad).unwrap_err();
        assert_eq!(err.path, bad);
    }
    assert!(workspace_relative(".pyro-staging")
        .unwrap_err()
        .to_string()
        .contains("staging directory"));
    assert_eq!(workspace_absolute(""), "/workspace");
    assert_eq!(workspace_absolute("a/b"), "/workspace/a/b");
}

fn entry(path: &str) -> FileInfo {
    FileInfo {
        path: path.into(),
        artifact_type: ArtifactType::File,
        size_bytes: 1,
        mode: 0o644,
        mtime: 0,
        link_target: None,
    }
}

#[test]
fn write_frame_refuses_what_read_frame_would() {
    let mut buf = Vec::new();
    let big = "x".repeat(MAX_HEADER as usize);
    let err = write_frame(&mut buf, &Request::Stat { path: big }, &[]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("frame header"), "{err}");
    let data = vec![0u8; MAX_DATA as usize + 1];
    let err = write_frame(&mut buf, &Event::Data, &data).unwrap_err();
    assert!(err.to_string().contains("frame data"), "{err}");
    assert!(buf.is_empty(), "nothing written for a refused frame");
    write_frame(&mut buf, &Event::Data, &data[1..]).unwrap();
}

#[test]
fn listings_stream_in_chunks_and_come_back_sorted() {
    // 10,000 entries: over ten times what one header could hold.
    let mut lines = ListLines::default();
    let mut frames = Vec::new();
    for i in (0..10_000).rev() {
        frames.extend(lines.push(&entry(&format!("/workspace/d/{i:05}"))).unwrap());
    }
    frames.push(lines.finish());
    assert!(frames.len() > 1 && frames.iter().all(|f| f.len() <= MAX_DATA as usize));
    let mut reader = ListReader::default();
    // Split anywhere: a line may straddle two data parts.
    for f in &frames {
        let (a, b) = f.split_at(f.len() / 3);
        reader.push(a).unwrap();
        reader.push(b).unwrap();
    }
    let entries = reader.finish().unwrap();
    assert_eq!(entries.len(), 10_000);
    assert_eq!(entries[0].path, "/workspace/d/00000");
    assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
}

#[test]
fn a_hostile_listing_is_refused_within_bounds() {
    let mut r = ListReader::default();
    assert!(r.push(&vec![b'x'; MAX_LIST_LINE + 1]).is_err());
    let mut r = ListReader::default();
    assert!(r.push(b"{\"not\":\"an entry\"}\n").is_err());
    let mut r = ListReader::default();
    r.push(b"{").unwrap();
    assert!(r.finish().is_err());
    let mut r = ListReader::default();
    let mut line = serde_json::to_vec(&entry("/workspace/a")).unwrap();
    line.push(b'\n');
    // The entry count bounds small entries...
    let all: Vec<u8> = line.repeat(MAX_LIST_ENTRIES);
    r.push(&all).unwrap();
    let err = r.push(&line).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    // ...and the bytes bound large ones, long before the count would.
    let long = entry(&format!("/workspace/{}", "x".repeat(4000)));
    let mut line = serde_json::to_vec(&long).unwrap();
    line.push(b'\n');
    let fit = MAX_LIST_BYTES / line.len();
    assert!(fit < MAX_LIST_ENTRIES);
    let mut r = ListReader::default();
    r.push(&line.repeat(fit)).unwrap();
    assert!(r.push(&line).is_err());
}

#[test]
fn the_guest_side_stops_where_the_host_side_would_refuse() {
    let long = entry(&format!("/workspace/{}", "y".repeat(4000)));
    let mut lines = ListLines::default();
    let mut reader = ListReader::default();
    let mut n = 0;
    loop {
        match lines.push(&long) {
            Ok(Some(chunk)) => reader.push(&chunk).unwrap(),
            Ok(None) => {}
            Err(ListFull) => break,
        }
        n += 1;
    }
    reader.push(&lines.finish()).unwrap();
    assert_eq!(reader.finish().unwrap().len(), n);
    let mut budget = ListBudget::default();
    assert!((0..n).all(|_| budget.take_entry(&long)));
    assert!(
        !budget.take_entry(&long),
        "the same budget is full at the same entry"
    );
}

#[test]
fn oversized_and_malformed_frames_are_errors() {
    let mut r = &(MAX_HEADER + 1).to_le_bytes()[..];
    assert!(read_frame::<Request>(&mut r).is_err());
    let mut buf = Vec::new();
    buf.extend_from_slice(&3u32.to_le_bytes());
    buf.extend_from_slice(b"{x}");
    buf.extend_from_slice(&0u32.to_le_bytes());
    assert!(read_frame::<Request>(&mut &buf[..]).is_err());
    let truncated = &buf[..5];
    assert!(read_frame::<Request>(&mut &truncated[..]).is_err());
}

#[test]
fn staged_sums_differ_for_changed_bytes_and_lengths() {
    let a = vec![1u8; 4096];
    let mut b = a.clone();
    b[4000] = 2;
    assert_ne!(staged_sum(&a), staged_sum(&b));
    assert_ne!(staged_sum(&a), staged_sum(&a[..4095]));
    assert_ne!(staged_sum(&[0u8; 512]), staged_sum(&[0u8; 1024]));
    assert_eq!(staged_sum(&a), staged_sum(&a.clone()));
}
