// The OCI `linux.seccomp` section for jail sandboxes, with the intent of Docker's default profile
// (moby profiles/seccomp/default.json): what a container without CAP_SYS_ADMIN must not reach. runc
// applies it to PID 1 and to every `runc exec`, and children inherit it (so an in-sandbox init that
// forks/execs/setuids/openpty()s/uses inotify keeps working: none of that is denied).
//
// Difference from moby: moby's is an allowlist (default ERRNO, ~350 allowed names); this one is a
// denylist (default ALLOW) of the syscalls moby leaves out for an unprivileged container. Trade-off:
// a syscall added by a future kernel is allowed until listed here, whereas moby's denies it; in
// exchange nothing an ordinary program needs is ever missing. Errors are EPERM, except clone3,
// which is ENOSYS as in moby so that glibc falls back to clone(2), whose flags can be inspected.
export const EPERM = 1;
export const ENOSYS = 38;

/** Denied outright (EPERM). */
export const DENIED_SYSCALLS = [
  // kernel keyrings (shared kernel-wide state)
  'add_key', 'keyctl', 'request_key',
  // eBPF, perf, io_uring: large attack surface
  'bpf', 'perf_event_open', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  // mounts and the new mount API
  'mount', 'umount', 'umount2', 'pivot_root', 'move_mount', 'open_tree', 'fsopen', 'fsmount', 'fsconfig', 'fspick', 'mount_setattr',
  // joining other namespaces
  'setns',
  // kernel modules, kexec, reboot, swap, accounting, quotas
  'init_module', 'finit_module', 'delete_module', 'create_module', 'kexec_load', 'kexec_file_load', 'reboot',
  'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd',
  // host clock
  'settimeofday', 'clock_settime', 'clock_adjtime', 'stime',
  // file handles bypass path permission checks (the "shocker" escape)
  'open_by_handle_at', 'name_to_handle_at',
  // userfaultfd widens kernel race windows
  'userfaultfd',
  // obsolete or privileged leftovers
  'lookup_dcookie', 'nfsservctl', 'uselib', 'ustat', 'sysfs', '_sysctl', 'get_kernel_syms', 'query_module', 'vm86', 'vm86old',
  'iopl', 'ioperm', 'syslog', 'fanotify_init', 'mbind', 'set_mempolicy', 'migrate_pages', 'move_pages', 'kcmp',
  'process_vm_readv', 'process_vm_writev', 'pidfd_getfd',
];

/** Namespace flags of clone(2)/unshare(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME. */
export const NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080];

export interface SeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo: number; op: string }[];
}

export interface OciSeccomp {
  defaultAction: string;
  architectures: string[];
  syscalls: SeccompRule[];
}

export function seccompProfile(): OciSeccomp {
  const syscalls: SeccompRule[] = [
    { names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
  ];
  // One rule per flag (the args of one rule are ANDed): any namespace flag set -> EPERM. CLONE_NEWTIME
  // (0x80) overlaps CSIGNAL in clone(2), so it is checked for unshare only.
  for (const flag of NAMESPACE_FLAGS) {
    const names = flag === 0x80 ? ['unshare'] : ['unshare', 'clone'];
    syscalls.push({ names, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM, args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }] });
  }
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    // All three x86 ABIs, so the 32-bit and x32 syscall entry points get the same rules.
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls,
  };
}
