# SPDX-License-Identifier: Apache-2.0
# PostgreSQL tests (included by tests/CMakeLists.txt when SQLOCK_WITH_POSTGRESQL). They need the
# servers of scripts/with-postgres; without its environment they FAIL, never skip.
target_sources(sqlock_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/connection_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/fencing_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/hardening_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/notify_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/privileges_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/sql_api_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/row_locks_test.cpp
                                   ${CMAKE_CURRENT_SOURCE_DIR}/postgresql/statements_test.cpp)
target_link_libraries(sqlock_tests PRIVATE PostgreSQL::PostgreSQL PkgConfig::PQXX)

add_test(NAME conformance.postgresql COMMAND sqlock_tests --test-case=*<postgresql>*)
add_test(NAME conformance.pgbouncer COMMAND sqlock_tests --test-case=*<pgbouncer>*)
# PostgreSQL-only tests live in TEST_SUITE("postgresql"), which the `unit` entry excludes.
add_test(NAME postgresql COMMAND sqlock_tests --test-suite=postgresql)
set_tests_properties(conformance.postgresql conformance.pgbouncer postgresql PROPERTIES TIMEOUT 600)
