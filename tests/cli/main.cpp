// SPDX-License-Identifier: Apache-2.0
// The doctest runner of the CLI tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
