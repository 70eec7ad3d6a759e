# Debian packages, made by CPack's DEB generator (docs/packaging.md says why
# CPack and not a debian/ directory): cairn-mdm, cairn-sds and cairn-sdc, one
# per daemon with its unit and default configuration, and cairn-cli. Build:
#   cmake -S . -B build-pkg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF
#   cmake --build build-pkg && (cd build-pkg && cpack -G DEB)

set(CAIRN_DEB_DIR ${PROJECT_SOURCE_DIR}/cmake/deb)
set(CAIRN_DEB_RELEASE 1)
# the binaries' version (CAIRN_VERSION: the project's and CAIRN_VERSION_SUFFIX)
set(CAIRN_DEB_VERSION ${CAIRN_VERSION}-${CAIRN_DEB_RELEASE})

# component -> its binary, and a one-line and a longer description
set(CAIRN_PKG_mdm_BIN cairn-mdm)
set(CAIRN_PKG_mdm_SUMMARY "Cairn block storage: metadata manager")
set(CAIRN_PKG_mdm_TEXT "The cluster's single source of truth, replicated with Raft: it registers\nservers, devices, pools, volumes and clients, places every extent's copies\nand orchestrates rebuild and rebalance. Run one, three or five.")
set(CAIRN_PKG_sds_BIN cairn-sds)
set(CAIRN_PKG_sds_SUMMARY "Cairn block storage: storage data server")
set(CAIRN_PKG_sds_TEXT "One per storage host: it owns the host's devices, stores extents, serves\nreads and writes and replicates each write to the other copies.")
set(CAIRN_PKG_sdc_BIN cairn-sdc)
set(CAIRN_PKG_sdc_SUMMARY "Cairn block storage: storage data client (NBD server)")
set(CAIRN_PKG_sdc_TEXT "One per consuming host: it serves each volume mapped to the host as an\nNBD export (TCP and a unix socket) and sends every I/O straight to the\nserver that holds the data.")
set(CAIRN_PKG_cli_BIN cairn)
set(CAIRN_PKG_cli_SUMMARY "Cairn block storage: command-line interface")
set(CAIRN_PKG_cli_TEXT "The operator's CLI, cairn: creates, lists, inspects and removes every\nobject of a Cairn cluster, and issues its credentials.")
# its manual page: section, and the line of its NAME section (whatis)
set(CAIRN_PKG_mdm_MAN 8 "metadata manager of a Cairn block storage cluster")
set(CAIRN_PKG_sds_MAN 8 "storage data server of a Cairn block storage cluster")
set(CAIRN_PKG_sdc_MAN 8 "storage data client (NBD server) of a Cairn block storage cluster")
set(CAIRN_PKG_cli_MAN 1 "command-line interface of a Cairn block storage cluster")

string(TIMESTAMP CAIRN_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(CPACK_PACKAGE_CONTACT "Cairn maintainers <maintainers@cairn.invalid>")
set(CPACK_PACKAGE_VENDOR "Cairn")
set(CPACK_PACKAGE_VERSION ${CAIRN_VERSION})
set(CPACK_DEBIAN_PACKAGE_VERSION ${CAIRN_VERSION})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL mdm sds sdc cli)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${CAIRN_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the binaries' libraries (dpkg-shlibdeps): libraft0 (>= 0.22.1,
# bookworm-backports on Debian 12), libuv1, liburing2, libsystemd0, ...
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)

configure_file(${CAIRN_DEB_DIR}/changelog.in ${CMAKE_BINARY_DIR}/deb/changelog.Debian @ONLY)
find_program(GZIP gzip REQUIRED)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/deb/changelog.Debian.gz
                   COMMAND ${GZIP} -9nkf ${CMAKE_BINARY_DIR}/deb/changelog.Debian
                   DEPENDS ${CMAKE_BINARY_DIR}/deb/changelog.Debian)
add_custom_target(cairn_deb_changelog ALL DEPENDS ${CMAKE_BINARY_DIR}/deb/changelog.Debian.gz)

# Manual pages, made at build time by help2man from each binary's --help
# and --version (as cmake/man_help.sh passes them on), with the sections
# written by hand in docs/man/BINARY.h2m (synopsis, description, files, see
# also); gzip -9n, as Debian policy wants them installed.
find_program(HELP2MAN help2man REQUIRED)
set(CAIRN_MAN_PAGES "")
foreach(c mdm sds sdc cli)
  set(bin ${CAIRN_PKG_${c}_BIN})
  list(GET CAIRN_PKG_${c}_MAN 0 sec)
  list(GET CAIRN_PKG_${c}_MAN 1 whatis)
  set(page ${CMAKE_BINARY_DIR}/man/${bin}.${sec})
  set(h2m ${PROJECT_SOURCE_DIR}/docs/man/${bin}.h2m)
  add_custom_command(OUTPUT ${page}.gz
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
                     COMMAND ${HELP2MAN} --no-info --section=${sec} --name=${whatis}
                             --include=${h2m} --output=${page}
                             "${PROJECT_SOURCE_DIR}/cmake/man_help.sh $<TARGET_FILE:${bin}>"
                     COMMAND ${GZIP} -9nf ${page}
                     DEPENDS ${bin} ${h2m} ${PROJECT_SOURCE_DIR}/cmake/man_help.sh
                     COMMENT "Making the manual page ${bin}(${sec})"
                     VERBATIM)
  list(APPEND CAIRN_MAN_PAGES ${page}.gz)
  set(CAIRN_PKG_${c}_PAGE ${page}.gz)
  set(CAIRN_PKG_${c}_SEC ${sec})
endforeach()
add_custom_target(cairn_man ALL DEPENDS ${CAIRN_MAN_PAGES})

foreach(c mdm sds sdc cli)
  string(TOUPPER ${c} C)
  set(PKG cairn-${c})
  set(CPACK_DEBIAN_${C}_PACKAGE_NAME ${PKG})
  set(CPACK_DEBIAN_${C}_FILE_NAME DEB-DEFAULT)
  set(CPACK_COMPONENT_${C}_DESCRIPTION "${CAIRN_PKG_${c}_SUMMARY}\n${CAIRN_PKG_${c}_TEXT}")
  set(CPACK_DEBIAN_${C}_PACKAGE_SECTION admin)
  install(TARGETS ${CAIRN_PKG_${c}_BIN} RUNTIME DESTINATION bin COMPONENT ${c})
  install(FILES ${CAIRN_DEB_DIR}/copyright ${CMAKE_BINARY_DIR}/deb/changelog.Debian.gz
          DESTINATION share/doc/${PKG} COMPONENT ${c})
  install(FILES ${CAIRN_PKG_${c}_PAGE} DESTINATION share/man/man${CAIRN_PKG_${c}_SEC}
          COMPONENT ${c})
  if(c STREQUAL cli)
    set(CPACK_DEBIAN_CLI_PACKAGE_DEPENDS "")
    continue()
  endif()
  # a daemon: its unit, its configuration file (a conffile), and the
  # maintainer scripts that make the user cairn and handle the unit
  set(UNIT ${PKG}.service)
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/${UNIT} DESTINATION /lib/systemd/system
          COMPONENT ${c})
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/etc/${c}.conf DESTINATION /etc/cairn COMPONENT ${c})
  set(d ${CMAKE_BINARY_DIR}/deb/${c})
  foreach(s postinst prerm postrm)
    configure_file(${CAIRN_DEB_DIR}/${s}.in ${d}/${s} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                   GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endforeach()
  file(WRITE ${d}/conffiles "/etc/cairn/${c}.conf\n")
  set(CPACK_DEBIAN_${C}_PACKAGE_CONTROL_EXTRA ${d}/postinst ${d}/prerm ${d}/postrm ${d}/conffiles)
  set(CPACK_DEBIAN_${C}_PACKAGE_DEPENDS "adduser")
  if(c STREQUAL mdm)
    # dpkg-shlibdeps says >= 0.21.0 (the soname's first version); 0.15 to
    # 0.22.0 can lose committed entries (docs/raft.md)
    set(CPACK_DEBIAN_MDM_PACKAGE_DEPENDS "adduser, libraft0 (>= 0.22.1)")
  endif()
  set(CPACK_DEBIAN_${C}_PACKAGE_RECOMMENDS "cairn-cli (= ${CAIRN_DEB_VERSION})")
endforeach()

include(CPack)
