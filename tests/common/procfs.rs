//! Reading `/proc/<pid>/stat`: the fields after the command name, which may itself hold
//! spaces and parentheses (so they start after the *last* `)`).

/// Indices into [`of_process`] / [`of_thread`] (`proc(5)` numbers fields from 1; these
/// count from field 3, the state).
pub const STATE: usize = 0;
pub const PPID: usize = 1;
pub const MINFLT: usize = 7;
pub const UTIME: usize = 11;
pub const STIME: usize = 12;
/// The CPU the process or thread last ran on: where it sleeps, if it sleeps.
pub const PROCESSOR: usize = 36;

/// Fields 3 onward of the `stat` file at `path`; `None` if it cannot be read (the
/// process is gone).
fn fields_of(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let close = stat.rfind(')')?;
    Some(
        stat[close + 1..]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// Fields 3 onward of process `pid`'s `stat`; `None` once it is gone.
pub fn of_process(pid: i32) -> Option<Vec<String>> {
    fields_of(&format!("/proc/{pid}/stat"))
}

/// Fields 3 onward of the `stat` of thread `tid` of this process; `None` once it is gone.
pub fn of_thread(tid: i32) -> Option<Vec<String>> {
    fields_of(&format!("/proc/self/task/{tid}/stat"))
}

/// Whether process `pid` is running or runnable (state `R`), not asleep; false once gone.
pub fn running(pid: i32) -> bool {
    of_process(pid).is_some_and(|f| f[STATE] == "R")
}

/// The minor page faults process `pid` has taken so far.
pub fn minor_faults(pid: i32) -> u64 {
    let f = of_process(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    f[MINFLT].parse().unwrap()
}

/// CPU time (user + system) of process `pid` in clock ticks, `None` once it is gone or a
/// zombie.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = of_process(pid)?;
    if f[STATE] == "Z" {
        return None;
    }
    Some(f[UTIME].parse::<u64>().ok()? + f[STIME].parse::<u64>().ok()?)
}
