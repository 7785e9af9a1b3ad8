//! Prints what the bounce classifier decides for every file of a directory, one recipient per
//! line, in the column layout of `scripts/bounce-oracle/sisimai_tsv.go`:
//!
//! `file  index  recipient  reason  hard_bounce  status  reply_code  (empty)  (empty)  diagnostic`
//!
//! ```sh
//! cargo run --release -p epistle-mail --example classify_tsv -- DIR > ours.tsv
//! ```

use std::io::Write;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: classify_tsv DIR   (every file in DIR is read as one mail)");
        std::process::exit(2);
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for path in paths.iter().filter(|p| p.is_file()) {
        let raw = std::fs::read(path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (i, r) in epistle_mail::bounce::classify_mail(&raw).iter().enumerate() {
            let diag = r.diagnostic.replace(['\t', '\n', '\r'], " ");
            writeln!(
                out,
                "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t\t\t{diag}",
                i + 1,
                r.email,
                r.reason.as_str(),
                r.hard_bounce,
                r.status,
                r.reply_code
            )?;
        }
    }
    out.flush()
}
