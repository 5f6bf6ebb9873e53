# SPDX-License-Identifier: Apache-2.0
# MariaDB tests (included by tests/CMakeLists.txt when SQLOCK_WITH_MARIADB). They need the server
# of scripts/with-mariadb; without its environment they FAIL, never skip.
target_sources(sqlock_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/mariadb/support_test.cpp
                                    ${CMAKE_CURRENT_SOURCE_DIR}/mariadb/fencing_test.cpp)
target_link_libraries(sqlock_tests PRIVATE MariaDB::MariaDB)

# MariaDB-only tests live in TEST_SUITE("mariadb"), which the `unit` entry excludes.
add_test(NAME mariadb COMMAND sqlock_tests --test-suite=mariadb)
set_tests_properties(mariadb PROPERTIES TIMEOUT 600)
# The conformance suite on the MariaDB fixture (every TEST_CASE_TEMPLATE instantiated for it).
add_test(NAME conformance.mariadb COMMAND sqlock_tests --test-case=*<mariadb>*)
set_tests_properties(conformance.mariadb PROPERTIES TIMEOUT 1200)
