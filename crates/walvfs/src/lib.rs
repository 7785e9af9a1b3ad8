//! A SQLite VFS that writes a durable WAL commit with one `pwrite`.
//!
//! SQLite appends each page of a commit to the write-ahead log as two
//! writes, the 24-byte frame header and then the page: a commit of 45 pages
//! is 90 `pwrite` calls, then one `fdatasync`. On a virtual machine each
//! call costs microseconds of kernel entry and page-cache bookkeeping; on
//! Epistle's SMTP path they were a fifth of the writer thread's time.
//!
//! This VFS forwards everything to SQLite's default VFS, except that on a
//! WAL file it gathers writes that follow each other into one buffer and
//! writes the buffer with a single call before anything that needs it on
//! disk: the commit's sync, a read, a size query or truncation, any file
//! control, closing. Writes that do not continue the buffer flush it first,
//! so the order of writes is kept.
//!
//! # When it gathers
//!
//! Only on a thread that said its transactions are durable
//! ([`set_durable`]): with `PRAGMA synchronous = FULL`, SQLite syncs the WAL
//! at every commit before it publishes the new frames to other connections
//! (in the shared-memory index), so the buffer is on disk before any reader
//! can look for it. With `synchronous = NORMAL` there is no sync at commit,
//! and a reader could look for frames still in the buffer: there, writes go
//! straight through.
//!
//! A transaction that fails after it wrote frames but before its commit's
//! sync (a cache spill, then an error) may leave them in the buffer; SQLite
//! forgets such frames. Call [`discard_unsynced`] with the connection once
//! such a transaction has ended: it drops them, so that they cannot later
//! overwrite frames another connection committed in their place. Closing
//! the connection drops them too.
//!
//! # What it needs
//!
//! The database must have SQLite's "powersafe overwrite" property (its
//! default): without it, SQLite pads a commit to a sector boundary and
//! writes the last frame's tail after the sync. A main database opened
//! without it (`psow=0`) is refused.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name to open a connection with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &str = "epistle-walvfs";
const NAME_C: &CStr = c"epistle-walvfs";

/// Largest buffer kept: a larger commit is written in pieces of about this
/// size. The default VFS takes at most 128 KiB - 1 bytes in one write (its
/// `seekAndWriteFd` masks the length with `0x1ffff`); this is 31 frames of
/// 4 KiB pages.
const MAX_BUFFER: usize = 0x1f000;

thread_local! {
    /// Whether this thread's transactions run with `synchronous = FULL`.
    static DURABLE: Cell<bool> = const { Cell::new(false) };
    /// Writes made to WAL files (see [`wal_writes`]).
    static WAL_WRITES: Cell<u64> = const { Cell::new(0) };
}

/// How many writes this thread has made to WAL files through this VFS: one
/// per gathered buffer, one per write passed straight through.
pub fn wal_writes() -> u64 {
    WAL_WRITES.with(Cell::get)
}

fn count_write() {
    WAL_WRITES.with(|n| n.set(n.get() + 1));
}

/// Says whether the transactions this thread runs from now on are synced at
/// commit (`PRAGMA synchronous = FULL`): only then are their WAL writes
/// gathered.
pub fn set_durable(durable: bool) {
    DURABLE.with(|d| d.set(durable));
}

/// Drops the WAL writes `conn` holds that no sync has written: frames of a
/// transaction that did not commit (see the module's documentation). Returns
/// how many bytes were dropped; 0 for a connection on another VFS.
pub fn discard_unsynced(conn: &rusqlite::Connection) -> usize {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is valid while `conn` is borrowed; the file control
    // only stores the main database's journal (here: WAL) file in `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            std::ptr::from_mut(&mut file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return 0;
    }
    // SAFETY: SQLite returned the open journal file of `conn`.
    if !std::ptr::eq(unsafe { (*file).pMethods }, &WAL_METHODS) {
        return 0;
    }
    // SAFETY: its methods are ours, so `open` set it up as a WalFile; `conn`
    // is borrowed, so nothing else uses the file meanwhile.
    let w = unsafe { wal(file) };
    let n = w.buf.len();
    w.buf.clear();
    n
}

/// Registers the VFS (once; later calls return the first result). It is not
/// made the default: only connections opened with [`NAME`] use it.
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register_once).clone()
}

fn register_once() -> Result<(), String> {
    // SAFETY: a null name asks for the default VFS; SQLite initialises itself.
    let real = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if real.is_null() {
        return Err("SQLite has no default VFS".into());
    }
    // SAFETY: `real` is SQLite's default VFS, which lives as long as the process.
    let real_ref = unsafe { &*real };
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: c_int::try_from(header_size()).map_err(|e| e.to_string())? + real_ref.szOsFile,
        mxPathname: real_ref.mxPathname,
        pNext: std::ptr::null_mut(),
        zName: NAME_C.as_ptr(),
        pAppData: real.cast(),
        xOpen: Some(open),
        xDelete: Some(delete),
        xAccess: Some(access),
        xFullPathname: Some(full_pathname),
        xDlOpen: Some(dl_open),
        xDlError: Some(dl_error),
        xDlSym: Some(dl_sym),
        xDlClose: Some(dl_close),
        xRandomness: Some(randomness),
        xSleep: Some(sleep),
        xCurrentTime: Some(current_time),
        xGetLastError: Some(get_last_error),
        xCurrentTimeInt64: Some(current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    });
    // SAFETY: the VFS is leaked, so it outlives every connection that uses it.
    let rc = unsafe { ffi::sqlite3_vfs_register(Box::leak(vfs), 0) };
    if rc == ffi::SQLITE_OK { Ok(()) } else { Err(format!("sqlite3_vfs_register failed with code {rc}")) }
}

/// A WAL file: our header, then the default VFS's file in the same memory.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Writes not yet made, starting at `buf_at` in the file.
    buf: Vec<u8>,
    buf_at: i64,
}

/// Where the default VFS's file starts in the memory SQLite gives us.
const fn header_size() -> usize {
    let n = std::mem::size_of::<WalFile>();
    n.div_ceil(16) * 16
}

fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: our VFS's pAppData is the default VFS (set at registration).
    unsafe { (*vfs).pAppData.cast() }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: `real` is the default VFS; its xOpen is always set.
    let Some(real_open) = (unsafe { (*real).xOpen }) else { return ffi::SQLITE_ERROR };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Any other file is the default VFS's own, in the memory SQLite gave
        // us (at least as large as the default VFS asks).
        // SAFETY: forwarded as SQLite called us.
        let rc = unsafe { real_open(real, name, file, flags, out_flags) };
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !powersafe(file) {
            // SAFETY: the file was opened above and is closed once, here;
            // SQLite does not close a file whose open failed.
            unsafe {
                if let Some(close) = (*(*file).pMethods).xClose {
                    close(file);
                }
                (*file).pMethods = std::ptr::null();
            }
            return ffi::SQLITE_CANTOPEN;
        }
        return rc;
    }
    // SAFETY: SQLite gave us `szOsFile` bytes: our header, then room for the
    // default VFS's file.
    let inner = unsafe { file.cast::<u8>().add(header_size()).cast::<ffi::sqlite3_file>() };
    // SAFETY: as above.
    let rc = unsafe { real_open(real, name, inner, flags, out_flags) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: `file` is ours to set; a null pMethods tells SQLite not to close it.
        unsafe { (*file).pMethods = std::ptr::null() };
        // SAFETY: the default VFS may have set its methods before failing;
        // they are static if set.
        let inner_methods = unsafe { (*inner).pMethods.as_ref() };
        if let Some(close) = inner_methods.and_then(|m| m.xClose) {
            // SAFETY: closing what the default VFS left open, as SQLite would.
            unsafe { close(inner) };
        }
        return rc;
    }
    let wal = WalFile { base: ffi::sqlite3_file { pMethods: &WAL_METHODS }, real: inner, buf: Vec::new(), buf_at: 0 };
    // SAFETY: the memory is ours, large and aligned enough (SQLite's
    // allocations are 8-byte aligned; WalFile needs 8).
    unsafe { file.cast::<WalFile>().write(wal) };
    ffi::SQLITE_OK
}

/// Whether an open main database file has the powersafe-overwrite property,
/// without which SQLite writes part of a commit's last frame after its sync.
fn powersafe(file: *mut ffi::sqlite3_file) -> bool {
    // SAFETY: `file` was opened by the default VFS, whose methods are static.
    let characteristics = unsafe { (*(*file).pMethods).xDeviceCharacteristics.map_or(0, |f| f(file)) };
    characteristics & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0
}

/// The WAL file behind a `sqlite3_file` SQLite passes to our methods.
///
/// # Safety
/// `file` must be a file our `open` set up with [`WAL_METHODS`].
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: per the contract.
    unsafe { &mut *file.cast::<WalFile>() }
}

/// The default VFS's methods of the file inside.
fn inner(w: &WalFile) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the inner file was opened successfully, so its methods are set
    // and static.
    unsafe { &*(*w.real).pMethods }
}

/// Writes the buffer. On failure the buffer is kept: its frames belong to a
/// transaction that may go on, and every later flush (the commit's sync
/// first) fails again or writes them.
fn flush(w: &mut WalFile) -> c_int {
    if w.buf.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = inner(w).xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let Ok(n) = c_int::try_from(w.buf.len()) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: the buffer is `n` readable bytes; the inner file is open.
    let rc = unsafe { write(w.real, w.buf.as_ptr().cast(), n, w.buf_at) };
    if rc == ffi::SQLITE_OK {
        count_write();
        w.buf.clear();
    }
    rc
}

/// [`flush`] before an operation that is not a write: a failure is the
/// write's (so that SQLite rolls the whole transaction back).
fn flush_for(w: &mut WalFile) -> c_int {
    match flush(w) {
        ffi::SQLITE_OK => ffi::SQLITE_OK,
        _ => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    // What is still held was never synced, so never committed: dropped, as
    // SQLite forgets it (written now, it could land on frames another
    // connection has committed since).
    w.buf.clear();
    let closed = match inner(w).xClose {
        // SAFETY: closing the inner file once, as SQLite closes ours once.
        Some(close) => unsafe { close(w.real) },
        None => ffi::SQLITE_OK,
    };
    // SAFETY: the header was written by `open` and is not used after this.
    unsafe { std::ptr::drop_in_place(file.cast::<WalFile>()) };
    closed
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    let rc = flush_for(w);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let Some(read) = inner(w).xRead else { return ffi::SQLITE_IOERR_READ };
    // SAFETY: forwarded as SQLite called us.
    unsafe { read(w.real, buf, amt, off) }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amt: c_int, off: i64) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    let len = usize::try_from(amt).unwrap_or(0);
    let gather = DURABLE.with(Cell::get) && len > 0 && len < MAX_BUFFER;
    let continues = !w.buf.is_empty() && w.buf_at + w.buf.len() as i64 == off;
    if !(gather && (continues || w.buf.is_empty()) && w.buf.len() + len <= MAX_BUFFER) {
        let rc = flush(w);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if !gather {
            let Some(write) = inner(w).xWrite else { return ffi::SQLITE_IOERR_WRITE };
            // SAFETY: forwarded as SQLite called us.
            let rc = unsafe { write(w.real, data, amt, off) };
            if rc == ffi::SQLITE_OK {
                count_write();
            }
            return rc;
        }
    }
    if w.buf.is_empty() {
        w.buf_at = off;
        if w.buf.capacity() == 0 {
            w.buf.reserve(MAX_BUFFER);
        }
    }
    // SAFETY: SQLite passes `amt` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    w.buf.extend_from_slice(bytes);
    ffi::SQLITE_OK
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    let rc = flush_for(w);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let Some(truncate) = inner(w).xTruncate else { return ffi::SQLITE_IOERR_TRUNCATE };
    // SAFETY: forwarded as SQLite called us.
    unsafe { truncate(w.real, size) }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    let rc = flush(w);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let Some(sync) = inner(w).xSync else { return ffi::SQLITE_IOERR_FSYNC };
    // SAFETY: forwarded as SQLite called us.
    unsafe { sync(w.real, flags) }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    let rc = flush_for(w);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let Some(file_size) = inner(w).xFileSize else { return ffi::SQLITE_IOERR_FSTAT };
    // SAFETY: forwarded as SQLite called us.
    unsafe { file_size(w.real, size) }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    match inner(w).xLock {
        // SAFETY: forwarded as SQLite called us.
        Some(f) => unsafe { f(w.real, level) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    match inner(w).xUnlock {
        // SAFETY: forwarded as SQLite called us.
        Some(f) => unsafe { f(w.real, level) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    match inner(w).xCheckReservedLock {
        // SAFETY: forwarded as SQLite called us.
        Some(f) => unsafe { f(w.real, out) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    let rc = flush_for(w);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    match inner(w).xFileControl {
        // SAFETY: forwarded as SQLite called us.
        Some(f) => unsafe { f(w.real, op, arg) },
        None => ffi::SQLITE_NOTFOUND,
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    match inner(w).xSectorSize {
        // SAFETY: forwarded as SQLite called us.
        Some(f) => unsafe { f(w.real) },
        None => 4096,
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls our methods only on files our `open` set up.
    let w = unsafe { wal(file) };
    match inner(w).xDeviceCharacteristics {
        // SAFETY: forwarded as SQLite called us.
        Some(f) => unsafe { f(w.real) },
        None => 0,
    }
}

// The VFS's own methods: forwarded to the default VFS with its own pointer
// (its methods may read their VFS's fields).

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xDelete.map_or(ffi::SQLITE_ERROR, |f| f(real, name, sync_dir)) }
}

unsafe extern "C" fn access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xAccess.map_or(ffi::SQLITE_ERROR, |f| f(real, name, flags, out)) }
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xFullPathname.map_or(ffi::SQLITE_ERROR, |f| f(real, name, n, out)) }
}

unsafe extern "C" fn dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xDlOpen.map_or(std::ptr::null_mut(), |f| f(real, name)) }
}

unsafe extern "C" fn dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    let real = real_vfs(vfs);
    // SAFETY: the default VFS lives as long as the process.
    if let Some(f) = unsafe { (*real).xDlError } {
        // SAFETY: forwarded to the default VFS as SQLite called us.
        unsafe { f(real, n, out) }
    }
}

type DlSym = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn dl_sym(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void, symbol: *const c_char) -> Option<DlSym> {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xDlSym.and_then(|f| f(real, handle, symbol)) }
}

unsafe extern "C" fn dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    let real = real_vfs(vfs);
    // SAFETY: the default VFS lives as long as the process.
    if let Some(f) = unsafe { (*real).xDlClose } {
        // SAFETY: forwarded to the default VFS as SQLite called us.
        unsafe { f(real, handle) }
    }
}

unsafe extern "C" fn randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xRandomness.map_or(0, |f| f(real, n, out)) }
}

unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xSleep.map_or(0, |f| f(real, micros)) }
}

unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xCurrentTime.map_or(ffi::SQLITE_ERROR, |f| f(real, out)) }
}

unsafe extern "C" fn get_last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us.
    unsafe { (*real).xGetLastError.map_or(0, |f| f(real, n, out)) }
}

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    let real = real_vfs(vfs);
    // SAFETY: forwarded to the default VFS as SQLite called us; version 2
    // VFSes (unix's is 3) have this method, else the time in days is used.
    unsafe {
        match (*real).xCurrentTimeInt64 {
            Some(f) => f(real, out),
            None => {
                let mut days = 0.0;
                let rc = current_time(vfs, &mut days);
                *out = (days * 86_400_000.0) as i64;
                rc
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        register().unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let c = Connection::open_with_flags_and_vfs(path, flags, NAME).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        c
    }

    fn insert(c: &Connection, from: i64, n: i64) {
        let tx = c.unchecked_transaction().unwrap();
        for i in from..from + n {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", (i, vec![(i % 251) as u8; 3000])).unwrap();
        }
        tx.commit().unwrap();
    }

    /// Rows and their bodies as another connection, on the default VFS, reads them.
    fn rows_elsewhere(path: &std::path::Path) -> Vec<(i64, usize, u8)> {
        let c = Connection::open(path).unwrap();
        let mut st = c.prepare("SELECT id, body FROM t ORDER BY id").unwrap();
        st.query_map([], |r| {
            let b: Vec<u8> = r.get(1)?;
            Ok((r.get(0)?, b.len(), b[0]))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn a_durable_commit_is_one_write_and_others_read_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let c = open(&path);
        set_durable(true);
        insert(&c, 0, 1); // the WAL's header and first frames
        let before = wal_writes();
        insert(&c, 1, 20); // about 20 pages: 40 writes without gathering
        let gathered = wal_writes() - before;
        assert_eq!(gathered, 1, "writes of one commit");
        // Readers on the default VFS see the commit as soon as it returns.
        let rows = rows_elsewhere(&path);
        assert_eq!(rows.len(), 21);
        // A commit larger than one write takes (128 KiB at most, for the
        // default VFS): about 100 pages in a few writes.
        let before = wal_writes();
        insert(&c, 1000, 100);
        let pieces = wal_writes() - before;
        assert!((3..=5).contains(&pieces), "{pieces} writes");
        assert!(rows.iter().all(|(i, len, b)| *len == 3000 && *b == (*i % 251) as u8));
        // Not durable: every write goes through as SQLite makes it.
        set_durable(false);
        c.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
        let before = wal_writes();
        insert(&c, 21, 20);
        assert!(wal_writes() - before >= 40, "{} writes", wal_writes() - before);
        assert_eq!(rows_elsewhere(&path).len(), 141);
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn frames_of_a_transaction_that_did_not_commit_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let c = open(&path);
        set_durable(true);
        insert(&c, 0, 1);
        // A tiny cache spills frames to the WAL mid-transaction; then the
        // transaction is rolled back.
        c.execute_batch("PRAGMA cache_size = 2; PRAGMA cache_spill = 2").unwrap();
        let before = wal_writes();
        c.execute_batch("BEGIN").unwrap();
        for i in 1..200 {
            c.execute("INSERT INTO t VALUES (?1, ?2)", (i, vec![7u8; 3000])).unwrap();
        }
        c.execute_batch("ROLLBACK").unwrap();
        // The spills went to the WAL file (reading a spilled page back
        // writes what was gathered); the last may still be held.
        let dropped = discard_unsynced(&c);
        assert!(wal_writes() > before || dropped > 0, "the transaction spilled nothing");
        assert_eq!(discard_unsynced(&c), 0);
        // Another connection commits where those frames were; ours then
        // commits after it: nothing of the rolled-back transaction comes back.
        {
            let other = Connection::open(&path).unwrap();
            other.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
            insert(&other, 1000, 30);
        }
        c.execute_batch("PRAGMA cache_size = -2000").unwrap();
        insert(&c, 2000, 5);
        let rows = rows_elsewhere(&path);
        assert_eq!(rows.len(), 1 + 30 + 5);
        assert!(rows.iter().all(|(i, len, b)| *len == 3000 && *b == (*i % 251) as u8));
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn a_database_without_powersafe_overwrite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        register().unwrap();
        let uri = format!("file:{}?psow=0", dir.path().join("db").display());
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_URI;
        let refused = Connection::open_with_flags_and_vfs(&uri, flags, NAME)
            .and_then(|c| c.execute_batch("PRAGMA journal_mode = WAL"));
        assert!(refused.is_err(), "opened with psow=0");
        let fine = format!("file:{}?psow=1", dir.path().join("db").display());
        let c = Connection::open_with_flags_and_vfs(&fine, flags, NAME).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x)").unwrap();
    }

    #[test]
    fn the_database_survives_a_reopen_and_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        set_durable(true);
        {
            let c = open(&path);
            for k in 0..10 {
                insert(&c, k * 10, 10);
            }
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            insert(&c, 100, 10);
        }
        let c = open(&path);
        insert(&c, 110, 10);
        assert_eq!(rows_elsewhere(&path).len(), 120);
    }
}
