# SPDX-License-Identifier: Apache-2.0
# Installs the build tree into a fresh prefix, builds tests/package against it with
# find_package(sqlock), and runs the consumer.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
macro(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
endmacro()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package -B ${WORK_DIR}/build
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DSANITIZE=${SANITIZE})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer ${WORK_DIR}/consumer.db)
message(STATUS "${out}")
# The pkg-config file is installed and names the library.
file(GLOB_RECURSE pcs ${WORK_DIR}/prefix/*/sqlock.pc)
if(NOT pcs)
  message(FATAL_ERROR "sqlock.pc was not installed")
endif()
list(GET pcs 0 pc_file)
file(READ ${pc_file} pc)
if(NOT pc MATCHES "-lsqlock")
  message(FATAL_ERROR "sqlock.pc does not name the library")
endif()
# Only users of the optional <sqlock/postgresql.hpp> need libpqxx: the package must not demand it.
file(GLOB_RECURSE package_files ${WORK_DIR}/prefix/*/sqlock*.cmake ${WORK_DIR}/prefix/*/sqlock.pc)
foreach(f IN LISTS package_files)
  file(READ ${f} text)
  string(TOLOWER "${text}" text)
  string(REGEX REPLACE "#[^\n]*" "" text "${text}")  # comments may explain why
  if(text MATCHES "pqxx")
    message(FATAL_ERROR "${f} demands libpqxx")
  endif()
endforeach()
# pkg-config, the way many C++ users link: one compiler line, against the installed tree under
# this (non-default) prefix.
find_program(PKG_CONFIG pkg-config REQUIRED)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs sqlock RESULT_VARIABLE rc
                OUTPUT_VARIABLE pc_flags ERROR_VARIABLE pc_err OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs sqlock failed: ${pc_err}")
endif()
if(NOT pc_flags MATCHES "${WORK_DIR}/prefix")
  message(FATAL_ERROR "sqlock.pc does not point into the install prefix: ${pc_flags}")
endif()
separate_arguments(pc_args UNIX_COMMAND "${pc_flags}")
set(san_args "")
if(SANITIZE)
  set(san_args -fsanitize=${SANITIZE})
endif()
run(c++ -std=c++17 ${san_args} ${SOURCE_DIR}/tests/package/main.cpp -o ${WORK_DIR}/pc_consumer
    ${pc_args})
run(${WORK_DIR}/pc_consumer ${WORK_DIR}/pc_consumer.db)
execute_process(COMMAND ${PKG_CONFIG} --static --libs sqlock RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --static --libs sqlock failed: ${out}")
endif()
