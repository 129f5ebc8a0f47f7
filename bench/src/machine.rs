//! The machine report printed at the top of every run (BENCH.md rule 6).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn c_field(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn kernel() -> String {
    // SAFETY: utsname is plain old data, and uname only writes into it.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::uname(&mut name) } != 0 {
        return "unknown".into();
    }
    format!("{} {} {}", c_field(&name.sysname), c_field(&name.release), c_field(&name.machine))
}

pub fn file_system(path: &Path) -> String {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return "unknown".into() };
    // SAFETY: statfs is plain old data.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path, valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return "unknown".into();
    }
    match stat.f_type as i64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs (NOT DURABLE)".into(),
        0x794c_7630 => "overlayfs".into(),
        other => format!("{other:#x}"),
    }
}

/// "write back" means the device has a volatile cache that flushes must empty.
pub fn write_cache(path: &Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else { return "unknown".into() };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    for candidate in [format!("{base}/queue/write_cache"), format!("{base}/../queue/write_cache")] {
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            return text.trim().to_string();
        }
    }
    "unknown".into()
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
