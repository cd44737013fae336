//! Who is at the keyboard, for audit trails (`--by`).

/// The OS account name: `USER`, else `LOGNAME`, else the password database's entry for this
/// process's user id (as in a container or a cron job with neither variable set); only when
/// none of these answers, the numeric id (`uid 1000`).
pub(crate) fn os_user() -> String {
    ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| format!("uid {}", uid()))
}

#[allow(
    unsafe_code,
    reason = "getuid has no safe wrapper in std; it takes nothing and cannot fail"
)]
fn uid() -> libc::uid_t {
    // SAFETY: getuid(2) takes no arguments, touches no memory and always succeeds.
    unsafe { libc::getuid() }
}

/// The name of this process's user in the password database (`getpwuid_r`).
#[allow(
    unsafe_code,
    reason = "std has no binding to the password database; getpwuid_r writes only into buffers owned here"
)]
fn account_name() -> Option<String> {
    let uid = uid();
    let mut size = 1024;
    loop {
        let mut buffer = vec![0 as libc::c_char; size];
        // SAFETY: `passwd` is plain data that getpwuid_r fills in; zeroed is a valid value.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local of the stated type and `buffer` is `size`
        // bytes long; the strings written into `entry` point into `buffer`, read before it goes.
        let code =
            unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), size, &mut found) };
        if code == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if code != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` is a NUL-terminated string inside `buffer`.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_password_database_knows_this_process_user() {
        // Every Unix process has a uid; the test machine has an entry for it (root or a user).
        let name = super::account_name().expect("an entry for this uid");
        assert!(!name.is_empty() && name != "unknown");
    }
}
