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
    // SAFETY: utsname is plain old data (all-zero bytes are a valid value).
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, writable out-pointer to a utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return "unknown".into();
    }
    format!("{} {} {}", c_field(&name.sysname), c_field(&name.release), c_field(&name.machine))
}

pub fn file_system(path: &Path) -> String {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return "unknown".into() };
    // SAFETY: statfs is plain old data (all-zero bytes are a valid value).
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, writable out-pointer.
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

/// The device's cache mode: "write back" means a volatile cache that flushes must empty,
/// "write through" means none. "unknown" when the directory's block device cannot be found.
pub fn write_cache(path: &Path) -> String {
    let Some((major, minor)) = block_device(path) else { return "unknown".into() };
    let base = format!("/sys/dev/block/{major}:{minor}");
    // A partition has no queue of its own: its parent disk's is one level up.
    for candidate in [format!("{base}/queue/write_cache"), format!("{base}/../queue/write_cache")] {
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            return format!("{} ({major}:{minor})", text.trim());
        }
    }
    "unknown".into()
}

/// The block device (major, minor) holding `path`: its st_dev, or, for file systems that report
/// an anonymous device (major 0: btrfs, overlay, ...), the source device of its mount.
fn block_device(path: &Path) -> Option<(u32, u32)> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major != 0 {
        return Some((major, minor));
    }
    // mountinfo: "id parent major:minor root mount-point options ... - fstype source super-options"
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = format!("{major}:{minor}");
    let source = mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        let source = fields.get(separator + 2)?;
        (fields.get(2) == Some(&wanted.as_str()) && source.starts_with("/dev/")).then(|| source.to_string())
    })?;
    let rdev = std::fs::metadata(source).ok()?.rdev();
    Some((libc::major(rdev), libc::minor(rdev)))
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
