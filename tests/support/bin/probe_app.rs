//! The image the process kubelet's tests run: a small program that shows the tests what
//! a container sees.
//!
//! - `serve ADDR [--file PATH]...`: answers HTTP on ADDR: `/readyz` (200, or 503 while a
//!   file `unready` is in its working directory) and `/healthz` (200),
//!   `/env` (its environment, `K=V` lines), `/args`, `/cwd`, `/file/N` (the N-th file,
//!   read on each request).
//! - `exit CODE [MESSAGE_FILE MESSAGE]`: writes MESSAGE to MESSAGE_FILE, prints a line
//!   and exits with CODE.
//! - `sleep SECONDS`: sleeps, then exits 0.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 2 => serve(&args[1], &files(&args[2..])),
        Some("exit") if args.len() >= 2 => {
            if let [file, message] = &args[2..] {
                std::fs::write(file, message).expect("the termination message file is writable");
            }
            println!("exiting with {}", args[1]);
            eprintln!("last words on stderr");
            std::process::exit(args[1].parse().expect("an exit code"));
        }
        Some("sleep") if args.len() >= 2 => {
            std::thread::sleep(Duration::from_secs_f64(args[1].parse().expect("seconds")));
            println!("slept {}s", args[1]);
        }
        _ => {
            eprintln!(
                "usage: kubelet-probe-app serve ADDR [--file PATH]... | exit CODE [FILE MESSAGE] | sleep SECONDS"
            );
            std::process::exit(2);
        }
    }
}

fn files(args: &[String]) -> Vec<String> {
    args.chunks(2).filter(|c| c.len() == 2 && c[0] == "--file").map(|c| c[1].clone()).collect()
}

fn serve(addr: &str, files: &[String]) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    println!("listening on {}", listener.local_addr().expect("bound"));
    for stream in listener.incoming().flatten() {
        let files = files.to_vec();
        std::thread::spawn(move || answer(stream, &files));
    }
}

fn answer(mut stream: TcpStream, files: &[String]) {
    let mut reader = BufReader::new(stream.try_clone().expect("the stream clones"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // The headers are read and ignored.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/readyz" if std::path::Path::new("unready").exists() => (503, "told to be unready".to_string()),
        "/readyz" | "/healthz" => (200, "ok".to_string()),
        "/env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            (200, vars.join("\n"))
        }
        "/args" => (200, std::env::args().collect::<Vec<_>>().join("\n")),
        "/cwd" => (200, std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()),
        _ => match path.strip_prefix("/file/").and_then(|n| n.parse::<usize>().ok()).and_then(|n| files.get(n)) {
            Some(file) => match std::fs::read_to_string(file) {
                Ok(text) => (200, text),
                Err(e) => (500, format!("{file}: {e}")),
            },
            None => (404, "not found".to_string()),
        },
    };
    let _ = write!(stream, "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
}
