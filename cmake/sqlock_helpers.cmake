# SPDX-License-Identifier: Apache-2.0
# Warnings and sanitizers, added per target (never through CMAKE_CXX_FLAGS).
function(sqlock_target_defaults target)
  # -Wundef: an `#if SQLOCK_HAVE_POSTGRESQL` without <sqlock/config.hpp> must not read as 0.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wundef)
  if(SQLOCK_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(SQLOCK_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${SQLOCK_SANITIZE} -fno-omit-frame-pointer
                                             -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${SQLOCK_SANITIZE})
    # GCC 12 reports false -Wmaybe-uninitialized inside libstdc++ (std::regex, std::optional)
    # when sanitizers and optimisation are combined; it would break -Werror sanitizer builds.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
endfunction()

# Generates a C++ source that embeds every migration file of `backend` (one source of truth:
# the .sql files; a test checks the embedded copy equals them).
function(sqlock_embed_migrations out_var)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_migrations.cpp)
  set(files)
  foreach(backend IN ITEMS postgresql sqlite mariadb)
    # CONFIGURE_DEPENDS: a file added later (even the first of a new folder) re-runs CMake.
    file(GLOB sql CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/migrations/${backend}/*.sql)
    list(APPEND files ${sql})
  endforeach()
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DOUT=${out}
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_migrations.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/embed_migrations.cmake
    COMMENT "Embedding SQL migrations"
    VERBATIM)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
