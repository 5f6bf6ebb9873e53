# SPDX-License-Identifier: Apache-2.0
# Tests of the real `sqlock` binary (included by tests/CMakeLists.txt when SQLOCK_BUILD_CLI).
# cli.sqlite runs every case that needs no server; cli.postgresql and cli.mariadb run the database
# cases against the servers of scripts/with-postgres and scripts/with-mariadb and FAIL (never
# skip) without SQLOCK_TEST_POSTGRESQL_URL or SQLOCK_TEST_MARIADB_URL and SQLOCK_MARIADB_PASSFILE.
find_package(nlohmann_json REQUIRED)

add_executable(sqlock_cli_tests
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/main.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_coordination_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_hardening_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_multi_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_revocation_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_history_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_process_group_test.cpp)
target_link_libraries(sqlock_cli_tests PRIVATE doctest::doctest nlohmann_json::nlohmann_json SQLite::SQLite3
                                               Threads::Threads)
# The tests run the binary; from the library they take only <sqlock/config.hpp> (which backends exist).
target_include_directories(sqlock_cli_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
                                                    $<TARGET_PROPERTY:sqlock,INTERFACE_INCLUDE_DIRECTORIES>)
target_compile_definitions(sqlock_cli_tests PRIVATE SQLOCK_CLI_BINARY="$<TARGET_FILE:sqlock_cli>"
  SQLOCK_CLI_MANPAGE="$<TARGET_FILE_DIR:sqlock_cli>/sqlock.1"
  SQLOCK_CLI_COMPLETION="${PROJECT_SOURCE_DIR}/src/cli/share/sqlock.bash")
if(SQLOCK_WITH_POSTGRESQL)
  target_link_libraries(sqlock_cli_tests PRIVATE PostgreSQL::PostgreSQL)
endif()
if(SQLOCK_WITH_MARIADB)
  target_link_libraries(sqlock_cli_tests PRIVATE MariaDB::MariaDB)
endif()
sqlock_target_defaults(sqlock_cli_tests)
add_dependencies(sqlock_cli_tests sqlock_cli)

add_test(NAME cli.sqlite COMMAND sqlock_cli_tests --test-case-exclude=*<postgresql>*,*<mariadb>*)
set_tests_properties(cli.sqlite PROPERTIES TIMEOUT 300)
if(SQLOCK_WITH_POSTGRESQL)
  add_test(NAME cli.postgresql COMMAND sqlock_cli_tests --test-case=*<postgresql>*)
  set_tests_properties(cli.postgresql PROPERTIES TIMEOUT 300)
endif()
if(SQLOCK_WITH_MARIADB)
  add_test(NAME cli.mariadb COMMAND sqlock_cli_tests --test-case=*<mariadb>*)
  set_tests_properties(cli.mariadb PROPERTIES TIMEOUT 300)
endif()
