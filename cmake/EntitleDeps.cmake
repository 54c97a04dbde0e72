# SPDX-License-Identifier: Apache-2.0
# Finds the Debian 12 packages Entitle builds against (see ./run for the package list).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
pkg_check_modules(SQLITE REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
find_library(NNG_LIBRARY nng REQUIRED)
find_path(NNG_INCLUDE_DIR nng/nng.h REQUIRED)
add_library(nng::nng UNKNOWN IMPORTED)
set_target_properties(nng::nng PROPERTIES IMPORTED_LOCATION ${NNG_LIBRARY}
  INTERFACE_INCLUDE_DIRECTORIES ${NNG_INCLUDE_DIR})
find_program(PROTOC_C protoc-c REQUIRED)

# llhttp: Debian's node-llhttp ships the generated C sources; compile them here
# rather than vendoring a copy.
set(LLHTTP_SRC_DIR /usr/share/llhttp CACHE PATH "llhttp C sources (node-llhttp)")
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp CACHE PATH "llhttp header (node-llhttp)")
if(NOT EXISTS ${LLHTTP_SRC_DIR}/llhttp.c OR NOT EXISTS ${LLHTTP_INCLUDE_DIR}/llhttp.h)
  message(FATAL_ERROR "llhttp sources not found: install Debian's node-llhttp")
endif()
add_library(llhttp STATIC ${LLHTTP_SRC_DIR}/llhttp.c ${LLHTTP_SRC_DIR}/api.c ${LLHTTP_SRC_DIR}/http.c)
target_include_directories(llhttp PUBLIC ${LLHTTP_INCLUDE_DIR})
# Generated code: keep our warnings policy off it.
target_compile_options(llhttp PRIVATE -w)
set_target_properties(llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
