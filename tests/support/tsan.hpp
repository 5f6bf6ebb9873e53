// SPDX-License-Identifier: Apache-2.0
#pragma once
// The database lock is a synchronisation ThreadSanitizer cannot see (it happens inside SQLite
// or on the server). Tests that protect plain memory with a sqlock lease tell TSan about it.
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define SQLOCK_TEST_HAPPENS_AFTER(addr) \
  __tsan_acquire(const_cast<void*>(static_cast<const void*>(addr)))
#define SQLOCK_TEST_HAPPENS_BEFORE(addr) \
  __tsan_release(const_cast<void*>(static_cast<const void*>(addr)))
#else
#define SQLOCK_TEST_HAPPENS_AFTER(addr) ((void)(addr))
#define SQLOCK_TEST_HAPPENS_BEFORE(addr) ((void)(addr))
#endif
