// SPDX-License-Identifier: Apache-2.0
#pragma once
// Test-only fault points, compiled in only when the library is built with
// -DSQLOCK_FAULT_INJECTION=ON (the fault suite's build); otherwise they compile to nothing.
//
// At run time the environment variable SQLOCK_FAULT selects one point and what happens there:
//   SQLOCK_FAULT=<point>:crash        raise(SIGKILL) (a kill -9 at that exact instant)
//   SQLOCK_FAULT=<point>:stop         raise(SIGSTOP) (a pause until SIGCONT)
//   SQLOCK_FAULT=<point>:pause:<ms>   sleep that long on the calling thread
// optionally followed by @<n>: act only at the n-th time the point is reached (default 1st).
// Points: acquire.granted (the grant committed, the lease not yet returned), release.before
// (about to send the release), renew.before (the keepalive is about to send a renewal).

#ifdef SQLOCK_FAULT_INJECTION
namespace sqlock::detail {
void fault_point(const char* point) noexcept;
}
#define SQLOCK_FAULT_POINT(point) ::sqlock::detail::fault_point(point)
#else
#define SQLOCK_FAULT_POINT(point) ((void)0)
#endif
