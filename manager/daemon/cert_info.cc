#include "manager/daemon/cert_info.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <memory>

namespace hamirror::daemon {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::string Subject(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio) return "";
  // RFC 2253 order and escaping, one line: "CN=n1".
  if (X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

}  // namespace

Status ReadCertificateInfo(const std::string& path, CertificateInfo* out) {
  std::unique_ptr<FILE, FileCloser> f(fopen(path.c_str(), "re"));
  if (!f) return Status::FromErrno(path, errno);
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return Status::Corruption(path + ": no PEM certificate");
  const ASN1_TIME* not_after = X509_get0_notAfter(cert.get());
  struct tm tm {};
  if (not_after == nullptr || ASN1_TIME_to_tm(not_after, &tm) != 1)
    return Status::Corruption(path + ": unreadable notAfter");
  const time_t t = timegm(&tm);
  if (t < 0) return Status::Corruption(path + ": notAfter before 1970");
  out->subject = Subject(cert.get());
  out->not_after_s = static_cast<std::uint64_t>(t);
  return Status::Ok();
}

}  // namespace hamirror::daemon
