//! A scripted HTTP/1.1 server on 127.0.0.1 for tests: it answers each request with the next
//! scripted reply and records what it was asked. No test needs the internet.
use std::{
  io::{BufRead, BufReader, Read, Write},
  net::{TcpListener, TcpStream},
  sync::{Arc, Mutex},
  time::Duration,
};

/// One scripted reply.
#[derive(Clone, Debug)]
pub struct Reply {
  pub status: u16,
  pub headers: Vec<(String, String)>,
  pub body: Vec<u8>,
  /// Wait this long before answering.
  pub delay: Duration,
}

impl Reply {
  pub fn json(status: u16, body: &str) -> Self {
    Self {
      status,
      headers: vec![("content-type".into(), "application/json".into())],
      body: body.as_bytes().to_vec(),
      delay: Duration::ZERO,
    }
  }

  pub fn header(mut self, name: &str, value: &str) -> Self {
    self.headers.push((name.into(), value.into()));
    self
  }

  pub fn delayed(mut self, delay: Duration) -> Self {
    self.delay = delay;
    self
  }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Seen {
  pub method: String,
  pub path: String,
  pub headers: Vec<(String, String)>,
  pub body: String,
}

impl Seen {
  pub fn header(&self, name: &str) -> Option<&str> {
    self
      .headers
      .iter()
      .find(|(k, _)| k.eq_ignore_ascii_case(name))
      .map(|(_, v)| v.as_str())
  }
}

pub struct Server {
  pub url: String,
  seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
  /// Starts a server answering with `replies` in order (the last one again once they run out).
  pub fn start(replies: Vec<Reply>) -> Self {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let replies = Arc::new(Mutex::new(
      replies
        .into_iter()
        .collect::<std::collections::VecDeque<_>>(),
    ));
    std::thread::spawn(move || {
      for stream in listener.incoming().map_while(Result::ok) {
        let log = Arc::clone(&log);
        let replies = Arc::clone(&replies);
        std::thread::spawn(move || serve(stream, &log, &replies));
      }
    });
    Self { url, seen }
  }

  pub fn seen(&self) -> Vec<Seen> {
    self.seen.lock().map(|s| s.clone()).unwrap_or_default()
  }
}

fn serve(
  stream: TcpStream,
  log: &Mutex<Vec<Seen>>,
  replies: &Mutex<std::collections::VecDeque<Reply>>,
) {
  let mut reader = BufReader::new(match stream.try_clone() {
    Ok(s) => s,
    Err(_) => return,
  });
  let mut stream = stream;
  loop {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
      return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
      let mut header = String::new();
      if reader.read_line(&mut header).unwrap_or(0) == 0 {
        return;
      }
      let header = header.trim_end();
      if header.is_empty() {
        break;
      }
      if let Some((k, v)) = header.split_once(':') {
        if k.eq_ignore_ascii_case("content-length") {
          length = v.trim().parse().unwrap_or(0);
        }
        headers.push((k.trim().to_string(), v.trim().to_string()));
      }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
      return;
    }
    if let Ok(mut log) = log.lock() {
      log.push(Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
      });
    }
    let reply = {
      let Ok(mut replies) = replies.lock() else {
        return;
      };
      if replies.len() > 1 {
        replies.pop_front()
      } else {
        replies.front().cloned()
      }
    };
    let Some(reply) = reply else { return };
    std::thread::sleep(reply.delay);
    let mut head = format!(
      "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
      reply.status,
      reply.body.len()
    );
    for (k, v) in &reply.headers {
      head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&reply.body).is_err() {
      return;
    }
    let _ = stream.flush();
  }
}
