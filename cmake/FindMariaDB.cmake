# SPDX-License-Identifier: Apache-2.0
# find_package(MariaDB): MariaDB Connector/C (Debian: libmariadb-dev), the client library of the
# MariaDB backend (it also speaks to MySQL). Defines MariaDB_FOUND, MariaDB_VERSION (the
# connector's), MariaDB_INCLUDE_DIRS, MariaDB_LIBRARIES and the imported target
# MariaDB::MariaDB. pkg-config's `libmariadb` gives the hints when there is one; the header and
# the library are then found like any other, so the installed sqlock package (which ships this
# file) needs no pkg-config. Headers: <mysql.h>, <errmsg.h>, ... (the include dir is
# .../include/mariadb).
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_MariaDB QUIET libmariadb)
endif()
# mariadb_version.h is Connector/C's own (MySQL's client has mysql_version.h only).
find_path(MariaDB_INCLUDE_DIR NAMES mariadb_version.h
          HINTS ${PC_MariaDB_INCLUDE_DIRS} PATH_SUFFIXES mariadb)
find_library(MariaDB_LIBRARY NAMES mariadb HINTS ${PC_MariaDB_LIBRARY_DIRS})
mark_as_advanced(MariaDB_INCLUDE_DIR MariaDB_LIBRARY)

if(MariaDB_INCLUDE_DIR AND EXISTS ${MariaDB_INCLUDE_DIR}/mariadb_version.h)
  file(STRINGS ${MariaDB_INCLUDE_DIR}/mariadb_version.h version_line
       REGEX "^#define[ \t]+MARIADB_PACKAGE_VERSION[ \t]+\"[0-9.]+\"")
  string(REGEX REPLACE ".*\"([0-9.]+)\".*" "\\1" MariaDB_VERSION "${version_line}")
  unset(version_line)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MariaDB REQUIRED_VARS MariaDB_LIBRARY MariaDB_INCLUDE_DIR
                                  VERSION_VAR MariaDB_VERSION)
if(MariaDB_FOUND)
  set(MariaDB_INCLUDE_DIRS ${MariaDB_INCLUDE_DIR})
  set(MariaDB_LIBRARIES ${MariaDB_LIBRARY})
  if(NOT TARGET MariaDB::MariaDB)
    add_library(MariaDB::MariaDB UNKNOWN IMPORTED)
    set_target_properties(MariaDB::MariaDB PROPERTIES
      IMPORTED_LOCATION ${MariaDB_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${MariaDB_INCLUDE_DIR})
  endif()
endif()
