# SPDX-License-Identifier: Apache-2.0
include(CMakePackageConfigHelpers)

# sqlock::sqlock is what BUILD_SHARED_LIBS built; a shared build installs sqlock::sqlock_static
# (libsqlock.a) beside it.
set(installed_libraries sqlock)
if(TARGET sqlock_static)
  list(APPEND installed_libraries sqlock_static)
endif()
install(TARGETS ${installed_libraries} EXPORT sqlockTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/sqlock DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/include/sqlock/version.hpp
              ${PROJECT_BINARY_DIR}/include/sqlock/config.hpp
              ${PROJECT_BINARY_DIR}/include/sqlock/export.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sqlock)
install(DIRECTORY migrations/ DESTINATION ${CMAKE_INSTALL_DATADIR}/sqlock/migrations)
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/sqlock)
install(EXPORT sqlockTargets NAMESPACE sqlock:: DESTINATION ${config_dir})
configure_package_config_file(cmake/sqlockConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sqlockConfig.cmake INSTALL_DESTINATION ${config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sqlockConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sqlockConfig.cmake ${PROJECT_BINARY_DIR}/sqlockConfigVersion.cmake
        DESTINATION ${config_dir})
if(SQLOCK_WITH_MARIADB)
  # No CMake or Debian package ships a find module for Connector/C: sqlockConfig.cmake uses ours.
  install(FILES cmake/FindMariaDB.cmake DESTINATION ${config_dir})
endif()

# pkg-config. libpqxx is not a dependency: the backend speaks libpq; only
# <sqlock/postgresql.hpp>, an optional header, uses libpqxx, and its users link it themselves.
# The static library needs libpq, SQLite and MariaDB Connector/C, named in Libs (a static-only install) or
# Libs.private (beside the shared library: `pkg-config --static`). By name, not as Requires:
# `pkg-config --static` would then also pull in libpq's own private libraries (-lpgcommon
# -lpgport), which Debian does not ship.
set(backend_libs "")
if(SQLOCK_WITH_POSTGRESQL)
  string(APPEND backend_libs " -lpq")
endif()
if(SQLOCK_WITH_SQLITE)
  string(APPEND backend_libs " -lsqlite3")
endif()
if(SQLOCK_WITH_MARIADB)
  # Not Requires: libmariadb: its Libs.private (-lssl -lcrypto -lz ...) are for a static
  # libmariadb.a, which `pkg-config --static` would then demand though libmariadb.so is linked.
  string(APPEND backend_libs " -lmariadb")
endif()
if(BUILD_SHARED_LIBS)
  set(SQLOCK_PC_LIBS "")
  set(SQLOCK_PC_LIBS_PRIVATE "${backend_libs}")
else()
  set(SQLOCK_PC_LIBS "${backend_libs}")
  set(SQLOCK_PC_LIBS_PRIVATE "")
endif()
# The prefix, seen from <libdir>/pkgconfig (e.g. ../../.. for lib/x86_64-linux-gnu).
file(RELATIVE_PATH SQLOCK_PC_PREFIX_FROM_PCDIR "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
configure_file(cmake/sqlock.pc.in ${PROJECT_BINARY_DIR}/sqlock.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sqlock.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
