# SPDX-License-Identifier: Apache-2.0
# ent_add_unit_test(NAME SOURCES f.c... LIBS lib... [TIMEOUT s] [LABELS l...])
# One ctest per test file; the timeout scales with ENTITLE_TEST_TIMEOUT_MULTIPLIER.
find_library(CMOCKA_LIBRARY cmocka REQUIRED)
find_path(CMOCKA_INCLUDE_DIR cmocka.h REQUIRED)
function(ent_add_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT T_SOURCES)
    set(T_SOURCES ${name}.c)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE ${CMOCKA_INCLUDE_DIR} ${CMAKE_SOURCE_DIR}/tests/support)
  target_link_libraries(${name} PRIVATE ${T_LIBS} ${CMOCKA_LIBRARY})
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    SKIP_RETURN_CODE 77
    ENVIRONMENT "ENTITLE_TEST_VECTORS=${CMAKE_SOURCE_DIR}/tests/vectors;ENTITLE_BUILD_DIR=${CMAKE_BINARY_DIR};ENTITLE_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
