//! The two session requests whose reply line is followed by a stream on the
//! same connection: logs (raw bytes, optionally followed) and attach
//! (attach frames both ways).

use fs_err::File;
use std::io::{BufRead, ErrorKind, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use banger_agent_proto::{AttachFrame, LogStream, Response};

use super::SessionManager;
use crate::server::{Connection, write_reply};

/// How often a followed log is checked for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Serves [`banger_agent_proto::Request::SessionLogs`]: the reply line, the
/// log from `offset`, and with `follow` whatever is appended until the
/// session has exited and the log is drained. Ends early when the host
/// hangs up.
pub(crate) fn serve_logs<C: Connection>(
    manager: &SessionManager,
    reader: &mut impl BufRead,
    writer: &mut C,
    (name, stream, offset, follow): (&str, LogStream, u64, bool),
) {
    let (mut file, session) = match manager.open_log(name, stream) {
        Ok(opened) => opened,
        Err(reason) => return write_reply(writer, Response::SessionRefused { reason }),
    };
    let size = file.metadata().map_or(0, |meta| meta.len());
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return write_reply(
            writer,
            Response::Error {
                message: format!("cannot seek the {name} log to {offset}"),
            },
        );
    }
    write_reply(writer, Response::LogStream { size });
    let session = session.filter(|_| follow);
    // The read timeout doubles as the poll interval: waiting on the
    // connection notices a host that hung up.
    let _ = writer.set_read_timeout(Some(FOLLOW_POLL));
    loop {
        let finished = session.as_ref().is_none_or(|s| s.has_exited());
        if copy_available(&mut file, writer).is_err() || finished {
            return;
        }
        let mut probe = [0u8; 64];
        match reader.read(&mut probe) {
            // EOF: the host is gone. Bytes: the host has no business sending
            // any; either way stop rather than spin.
            Ok(_) => return,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends everything from the file's position to its current end.
fn copy_available(file: &mut File, writer: &mut impl Write) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk)? {
            0 => return writer.flush(),
            read => writer.write_all(&chunk[..read])?,
        }
    }
}

/// Serves [`banger_agent_proto::Request::SessionAttach`]: the reply line,
/// then a writer thread sends the session's output frames while this thread
/// feeds stdin frames to the session, until the host detaches or hangs up or
/// the session exits.
pub(crate) fn serve_attach<C: Connection>(
    manager: &SessionManager,
    reader: &mut impl BufRead,
    writer: &mut C,
    name: &str,
) {
    let (status, attachment) = match manager.attach(name) {
        Ok(attached) => attached,
        Err(reason) => return write_reply(writer, Response::SessionRefused { reason }),
    };
    write_reply(writer, Response::Attached { session: status });
    let session = attachment.session.clone();
    let id = attachment.id;
    // An attached host may type nothing for hours.
    let _ = writer.set_read_timeout(None);
    let output = match writer.try_clone() {
        Ok(output) => output,
        Err(_) => return session.detach(id),
    };
    let frames = attachment.frames;
    let sender = std::thread::Builder::new()
        .name(format!("attach-{name}"))
        .spawn(move || {
            let mut output = output;
            let mut bytes = Vec::new();
            for frame in frames {
                bytes.clear();
                frame.encode(&mut bytes);
                let last = matches!(frame, AttachFrame::Exit { .. });
                if output.write_all(&bytes).is_err() || last {
                    break;
                }
            }
            // Session exited, host too slow, or detached: wake the reading
            // side up by closing the connection.
            let _ = output.shutdown();
        });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    'reading: loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        buf.extend_from_slice(&chunk[..read]);
        loop {
            match AttachFrame::decode(&mut buf) {
                Ok(Some(AttachFrame::Stdin(data))) => {
                    // EPIPE: the session closed its stdin; keep serving its
                    // output until it exits.
                    let _ = session.write_stdin(&data);
                }
                Ok(Some(AttachFrame::Detach)) | Err(_) => break 'reading,
                // Output frames from the host are meaningless: ignore them.
                Ok(Some(_)) => {}
                Ok(None) => break,
            }
        }
    }
    session.detach(id);
    let _ = writer.shutdown();
    if let Ok(sender) = sender {
        let _ = sender.join();
    }
}
