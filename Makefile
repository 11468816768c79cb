# wstund: build and install.
#
#   make                       cargo build --release (stripped, no debug info)
#   make install               installs under PREFIX (/usr/local), conf in /etc
#   make install DESTDIR=/tmp/root PREFIX=/usr     staged, as packagers do
#   make uninstall             removes what install put there (the conf only when unchanged)
#
# Installed: $(SBINDIR)/wstund, wstund(8) and wstund.conf(5) gzipped, $(SYSCONFDIR)/wstund/
# wstund.conf (not overwritten when present) and conf.d/, the systemd unit and socket,
# the sysv script, $(SYSCONFDIR)/default/wstund and the logrotate file. The unit and the
# sysv script name /usr/sbin/wstund: with another PREFIX they are rewritten on install.

PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
INITDIR    ?= $(SYSCONFDIR)/init.d
DESTDIR    ?=

CARGO            ?= cargo
CARGO_TARGET_DIR ?= target
BIN              := $(CARGO_TARGET_DIR)/release/wstund

INSTALL ?= install

.PHONY: all build install install-bin install-man install-conf install-service uninstall clean

all: build

build:
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(CARGO) build --release --locked --bin wstund

install: install-bin install-man install-conf install-service

install-bin: build
	$(INSTALL) -d $(DESTDIR)$(SBINDIR)
	$(INSTALL) -m 0755 -s $(BIN) $(DESTDIR)$(SBINDIR)/wstund

install-man:
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	gzip -9n < man/wstund.8 > $(DESTDIR)$(MANDIR)/man8/wstund.8.gz
	gzip -9n < man/wstund.conf.5 > $(DESTDIR)$(MANDIR)/man5/wstund.conf.5.gz
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/wstund.8.gz $(DESTDIR)$(MANDIR)/man5/wstund.conf.5.gz

install-conf:
	$(INSTALL) -d $(DESTDIR)$(SYSCONFDIR)/wstund/conf.d $(DESTDIR)$(SYSCONFDIR)/default \
		$(DESTDIR)$(SYSCONFDIR)/logrotate.d
	[ -e $(DESTDIR)$(SYSCONFDIR)/wstund/wstund.conf ] || \
		$(INSTALL) -m 0644 conf/system/wstund.conf $(DESTDIR)$(SYSCONFDIR)/wstund/wstund.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/default/wstund ] || \
		$(INSTALL) -m 0644 scripts/wstund.default $(DESTDIR)$(SYSCONFDIR)/default/wstund
	$(INSTALL) -m 0644 scripts/wstund.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/wstund

install-service:
	$(INSTALL) -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(INITDIR)
	sed -e 's|/usr/sbin/wstund|$(SBINDIR)/wstund|g' -e 's|/etc/|$(SYSCONFDIR)/|g' \
		scripts/wstund.service > $(DESTDIR)$(UNITDIR)/wstund.service
	$(INSTALL) -m 0644 scripts/wstund.socket $(DESTDIR)$(UNITDIR)/wstund.socket
	sed -e 's|/usr/sbin/wstund|$(SBINDIR)/wstund|g' -e 's|/etc/|$(SYSCONFDIR)/|g' \
		scripts/wstund.init > $(DESTDIR)$(INITDIR)/wstund
	chmod 0755 $(DESTDIR)$(INITDIR)/wstund
	chmod 0644 $(DESTDIR)$(UNITDIR)/wstund.service

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/wstund
	rm -f $(DESTDIR)$(MANDIR)/man8/wstund.8.gz $(DESTDIR)$(MANDIR)/man5/wstund.conf.5.gz
	rm -f $(DESTDIR)$(UNITDIR)/wstund.service $(DESTDIR)$(UNITDIR)/wstund.socket
	rm -f $(DESTDIR)$(INITDIR)/wstund $(DESTDIR)$(SYSCONFDIR)/logrotate.d/wstund
	# The conf and defaults only when they are still the shipped ones.
	cmp -s conf/system/wstund.conf $(DESTDIR)$(SYSCONFDIR)/wstund/wstund.conf && \
		rm -f $(DESTDIR)$(SYSCONFDIR)/wstund/wstund.conf || true
	cmp -s scripts/wstund.default $(DESTDIR)$(SYSCONFDIR)/default/wstund && \
		rm -f $(DESTDIR)$(SYSCONFDIR)/default/wstund || true
	-rmdir $(DESTDIR)$(SYSCONFDIR)/wstund/conf.d $(DESTDIR)$(SYSCONFDIR)/wstund 2>/dev/null

clean:
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(CARGO) clean
