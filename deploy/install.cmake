# Install rules (component "hamirror"): the layout of the Debian package that scripts/build-deb.sh makes
# with `DESTDIR=STAGE cmake --install BUILD --prefix /usr --component hamirror` (docs/deployment.md).
# The configuration, state and log directories are absolute whatever the prefix: hamirrord looks there.
include(GNUInstallDirs)
set(HAMIRROR_UNIT_DIR /lib/systemd/system CACHE PATH "where hamirrord@.service is installed")
set(HAMIRROR_COMPONENT COMPONENT hamirror)

install(TARGETS hamirrord hamirror-fs RUNTIME DESTINATION sbin ${HAMIRROR_COMPONENT})
install(TARGETS hamirror RUNTIME DESTINATION bin ${HAMIRROR_COMPONENT})
install(PROGRAMS ${CMAKE_SOURCE_DIR}/scripts/hamirror-certs DESTINATION bin ${HAMIRROR_COMPONENT})
install(PROGRAMS ${CMAKE_SOURCE_DIR}/deploy/systemd/hamirrord-stop DESTINATION lib/hamirror ${HAMIRROR_COMPONENT})
# The unit names the binaries by the prefix given at install time (/usr for the package).
install(CODE "
  set(SBINDIR \"\${CMAKE_INSTALL_PREFIX}/sbin\")
  set(PKGLIBDIR \"\${CMAKE_INSTALL_PREFIX}/lib/hamirror\")
  set(DOCDIR \"\${CMAKE_INSTALL_PREFIX}/share/doc/hamirror\")
  set(unit \"\$ENV{DESTDIR}${HAMIRROR_UNIT_DIR}/hamirrord@.service\")
  message(STATUS \"Installing: \${unit}\")
  configure_file(\"${CMAKE_SOURCE_DIR}/deploy/systemd/hamirrord@.service.in\" \"\${unit}\" @ONLY)
  file(CHMOD \"\${unit}\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  set(link \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/bin/safekit\")
  message(STATUS \"Installing: \${link} -> hamirror\")
  file(CREATE_LINK hamirror \"\${link}\" SYMBOLIC)
" ${HAMIRROR_COMPONENT})

# The MySQL/MariaDB module, a template the operator copies to /etc/hamirror/modules/mysql.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/scripts/modules/mysql DESTINATION share/hamirror/modules
        USE_SOURCE_PERMISSIONS ${HAMIRROR_COMPONENT})

foreach(page hamirror.1 hamirror-certs.1 hamirrord.8 hamirror-fs.8)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  configure_file(${CMAKE_SOURCE_DIR}/deploy/man/${page} ${CMAKE_BINARY_DIR}/man/${page} @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/man/${page} DESTINATION share/man/man${section} ${HAMIRROR_COMPONENT})
endforeach()
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION share/doc/hamirror ${HAMIRROR_COMPONENT})
file(GLOB HAMIRROR_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${HAMIRROR_DOCS} DESTINATION share/doc/hamirror ${HAMIRROR_COMPONENT})

foreach(dir /etc/hamirror /etc/hamirror/modules /var/lib/hamirror /var/log/hamirror)
  install(DIRECTORY DESTINATION ${dir} ${HAMIRROR_COMPONENT})
endforeach()
