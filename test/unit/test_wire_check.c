/* test_wire_check.c: CUnit tests of agent/server/wire_check.c: the strict
 * UTF-8 table, NUL and invalid UTF-8 found in top-level, nested and repeated
 * string fields of the real generated descriptors with the field path named,
 * fields the check must skip (bytes-like unknown fields, packed numbers,
 * fixed-width numbers), and broken wire data (truncated, bad varint, groups,
 * deep nesting). Wire bytes are made by packing a message with a placeholder
 * string and overwriting the placeholder's bytes in place. */
#include "agent/server/wire_check.h"
#include "common/error.h"
#include "ember/v1/instance.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

typedef struct utf8_case {
  const char *bytes;
  size_t len;
  long bad; /* expected offset, -1 valid */
  int nul;
} utf8_case;

#define U(s, bad, nul)                                                                             \
  {                                                                                                \
    s, sizeof(s) - 1, bad, nul                                                                     \
  }

static void test_utf8_table(void)
{
  static const utf8_case cases[] = {
      U("", -1, 0),
      U("plain ascii /var/lib/x.img", -1, 0),
      U("\xC2\x80", -1, 0),         /* U+0080 */
      U("\xDF\xBF", -1, 0),         /* U+07FF */
      U("\xE0\xA0\x80", -1, 0),     /* U+0800 */
      U("\xED\x9F\xBF", -1, 0),     /* U+D7FF */
      U("\xEE\x80\x80", -1, 0),     /* U+E000 */
      U("\xEF\xBF\xBF", -1, 0),     /* U+FFFF */
      U("\xF0\x90\x80\x80", -1, 0), /* U+10000 */
      U("\xF4\x8F\xBF\xBF", -1, 0), /* U+10FFFF */
      U("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", -1, 0),
      U("ab\0cd", 2, 1), /* NUL */
      U("\0", 0, 1),
      U("\x80", 0, 0), /* lone continuation */
      U("a\xBF", 1, 0),
      U("\xC0\x80", 0, 0),     /* overlong NUL */
      U("\xC1\xBF", 0, 0),     /* overlong */
      U("\xE0\x80\x80", 0, 0), /* overlong 3-byte */
      U("\xE0\x9F\xBF", 0, 0),
      U("\xF0\x80\x80\x80", 0, 0), /* overlong 4-byte */
      U("\xF0\x8F\xBF\xBF", 0, 0),
      U("\xED\xA0\x80", 0, 0),     /* U+D800 surrogate */
      U("\xED\xBF\xBF", 0, 0),     /* U+DFFF surrogate */
      U("\xF4\x90\x80\x80", 0, 0), /* U+110000 */
      U("\xF5\x80\x80\x80", 0, 0),
      U("\xFE", 0, 0),
      U("\xFF", 0, 0),
      U("ok\xC3", 2, 0),           /* truncated 2-byte */
      U("ok\xE2\x82", 2, 0),       /* truncated 3-byte */
      U("\xF0\x9F\x98", 0, 0),     /* truncated 4-byte */
      U("\xE2\x28\xA1", 0, 0),     /* bad second byte */
      U("\xE2\x82\x28", 0, 0),     /* bad third byte */
      U("\xF0\x9F\x98\x28", 0, 0), /* bad fourth byte */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int nul = -1;
    long got = srv_utf8_bad_offset((const uint8_t *)cases[i].bytes, cases[i].len, &nul);
    if (got != cases[i].bad || (got >= 0 && nul != cases[i].nul))
      fprintf(stderr, "utf8 case %zu: got %ld nul=%d, want %ld nul=%d\n", i, got, nul, cases[i].bad,
              cases[i].nul);
    CU_ASSERT_EQUAL(got, cases[i].bad);
    if (got >= 0)
      CU_ASSERT_EQUAL(nul, cases[i].nul);
  }
}

/* Packs m; then replaces the first occurrence of `placeholder` with `with`
 * (same length). */
static uint8_t *pack_patched(const ProtobufCMessage *m, size_t *len, const char *placeholder,
                             const char *with, size_t with_len)
{
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n + 1);
  protobuf_c_message_pack(m, buf);
  *len = n;
  if (placeholder != NULL) {
    CU_ASSERT_EQUAL_FATAL(strlen(placeholder), with_len);
    uint8_t *at = memmem(buf, n, placeholder, with_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    memcpy(at, with, with_len);
  }
  return buf;
}

/* A CreateInstanceRequest with two disks and one NIC; the strings are
 * distinct 8-byte placeholders. */
static uint8_t *create_req(size_t *len, const char *placeholder, const char *with)
{
  Ember__V1__CreateInstanceRequest r = EMBER__V1__CREATE_INSTANCE_REQUEST__INIT;
  Ember__V1__InstanceSpec spec = EMBER__V1__INSTANCE_SPEC__INIT;
  Ember__V1__Disk d0 = EMBER__V1__DISK__INIT, d1 = EMBER__V1__DISK__INIT;
  Ember__V1__NetworkInterface nic = EMBER__V1__NETWORK_INTERFACE__INIT;
  Ember__V1__Disk *disks[] = {&d0, &d1};
  Ember__V1__NetworkInterface *nics[] = {&nic};
  r.name = (char[]){"NAME____"};
  r.start = 1;
  spec.hypervisor = (char[]){"HYPER___"};
  spec.vcpus = 300; /* a multi-byte varint */
  spec.memory_mib = 128;
  spec.kernel_path = (char[]){"KERNEL__"};
  spec.cmdline = (char[]){"CMDLINE_"};
  d0.path = (char[]){"DISK0___"};
  d1.path = (char[]){"DISK1___"};
  d1.read_only = 1;
  spec.disks = disks;
  spec.n_disks = 2;
  nic.tap_device = (char[]){"TAP_____"};
  nic.mac_address = (char[]){"MAC_____"};
  spec.network_interfaces = nics;
  spec.n_network_interfaces = 1;
  r.spec = &spec;
  return pack_patched(&r.base, len, placeholder, with, placeholder ? 8 : 0);
}

static int check(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n, cmn_error *e)
{
  memset(e, 0, sizeof(*e));
  return srv_wire_check(d, b, n, e);
}

static void test_fields_named(void)
{
  static const struct {
    const char *placeholder, *with, *msg;
  } cases[] = {
      {"NAME____", "keep\0oth", "name holds a NUL byte at offset 4"},
      {"HYPER___", "qemu\xC0\x80xx", "spec.hypervisor is not valid UTF-8 (byte 0xC0 at offset 4)"},
      {"KERNEL__", "\0ERNEL__", "spec.kernel_path holds a NUL byte at offset 0"},
      {"CMDLINE_", "CMDLINE\xFF", "spec.cmdline is not valid UTF-8 (byte 0xFF at offset 7)"},
      {"DISK0___", "DISK0_\0_", "spec.disks[0].path holds a NUL byte at offset 6"},
      {"DISK1___", "DISK1_\0_", "spec.disks[1].path holds a NUL byte at offset 6"},
      {"TAP_____", "TAP\xED\xA0\x80_",
       "spec.network_interfaces[0].tap_device is not valid UTF-8 "
       "(byte 0xED at offset 3)"},
      {"MAC_____", "MAC____\0",
       "spec.network_interfaces[0].mac_address holds a NUL byte at "
       "offset 7"},
  };
  size_t n;
  cmn_error e;
  uint8_t *ok = create_req(&n, NULL, NULL);
  CU_ASSERT_EQUAL(check(&ember__v1__create_instance_request__descriptor, ok, n, &e), 0);
  free(ok);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint8_t *b = create_req(&n, cases[i].placeholder, cases[i].with);
    CU_ASSERT_EQUAL(check(&ember__v1__create_instance_request__descriptor, b, n, &e), -1);
    CU_ASSERT_EQUAL(e.code, CMN_INVALID_ARGUMENT);
    if (strcmp(e.msg, cases[i].msg) != 0)
      fprintf(stderr, "case %zu: got '%s'\n", i, e.msg);
    CU_ASSERT_STRING_EQUAL(e.msg, cases[i].msg);
    free(b);
  }
  /* The case. */
  Ember__V1__DeleteInstanceRequest d = EMBER__V1__DELETE_INSTANCE_REQUEST__INIT;
  d.id = (char[]){"keepme_other"};
  uint8_t *b = pack_patched(&d.base, &n, "keepme_other", "keepme\0other", 12);
  CU_ASSERT_EQUAL(check(&ember__v1__delete_instance_request__descriptor, b, n, &e), -1);
  CU_ASSERT_STRING_EQUAL(e.msg, "id holds a NUL byte at offset 6");
  free(b);
}

/* Deep, repeated nesting of descriptor.proto: a FileDescriptorProto with
 * message_type[1].field[2].name. */
static void test_deep_nesting(void)
{
  Google__Protobuf__FileDescriptorProto f = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__DescriptorProto m0 = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__DescriptorProto m1 = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__FieldDescriptorProto fl[3];
  Google__Protobuf__FieldDescriptorProto *flp[3];
  char target[] = "TARGET__", field[] = "field___";
  for (int i = 0; i < 3; i++) {
    google__protobuf__field_descriptor_proto__init(&fl[i]);
    fl[i].name = i == 2 ? target : field;
    fl[i].has_number = 1;
    fl[i].number = i + 1;
    flp[i] = &fl[i];
  }
  m0.name = (char[]){"m0"};
  m1.name = (char[]){"m1"};
  m1.field = flp;
  m1.n_field = 3;
  Google__Protobuf__DescriptorProto *mp[] = {&m0, &m1};
  f.name = (char[]){"x.proto"};
  f.message_type = mp;
  f.n_message_type = 2;
  size_t n;
  cmn_error e;
  uint8_t *b = pack_patched(&f.base, &n, "TARGET__", "TAR\xF4\x90\x80\x80_", 8);
  CU_ASSERT_EQUAL(check(&google__protobuf__file_descriptor_proto__descriptor, b, n, &e), -1);
  CU_ASSERT_STRING_EQUAL(e.msg, "message_type[1].field[2].name is not valid UTF-8 (byte 0xF4 at "
                                "offset 3)");
  free(b);
}

/* Unknown fields, packed numbers and fixed-width numbers are skipped, even
 * when their bytes would not be UTF-8; a known string field still counts. */
static void test_skipped(void)
{
  /* GetInstanceRequest { string id = 1; } with extra unknown records:
   * field 7 length-delimited holding 0x00 0xFF, field 8 fixed64, field 9
   * fixed32, field 10 varint, field 11 packed varints. */
  static const uint8_t ok[] = {
      0x0A, 0x02, 'v',  'm',                    /* id = "vm" */
      0x3A, 0x02, 0x00, 0xFF,                   /* 7: bytes */
      0x41, 0,    0,    0,    0,    0, 0, 0, 0, /* 8: fixed64 */
      0x4D, 0,    0xFF, 0,    0,                /* 9: fixed32 */
      0x50, 0xFF, 0x01,                         /* 10: varint */
      0x5A, 0x03, 0x00, 0xC0, 0x01,             /* 11: packed */
  };
  cmn_error e;
  CU_ASSERT_EQUAL(check(&ember__v1__get_instance_request__descriptor, ok, sizeof(ok), &e), 0);
  /* ListInstancesRequest: state is an enum (varint); a packed-looking record
   * on its number is not a string. */
  static const uint8_t en[] = {0x0A, 0x02, 0x00, 0xFF};
  CU_ASSERT_EQUAL(check(&ember__v1__list_instances_request__descriptor, en, sizeof(en), &e), 0);
  /* Empty request. */
  CU_ASSERT_EQUAL(check(&ember__v1__get_instance_request__descriptor, NULL, 0, &e), 0);
  /* The string last, after the skipped records. */
  static const uint8_t late[] = {0x3A, 0x01, 0xFF, 0x0A, 0x02, 'v', 0x00};
  CU_ASSERT_EQUAL(check(&ember__v1__get_instance_request__descriptor, late, sizeof(late), &e), -1);
  CU_ASSERT_STRING_EQUAL(e.msg, "id holds a NUL byte at offset 1");
  /* The same field twice (last one wins when decoding): both are checked. */
  static const uint8_t twice[] = {0x0A, 0x01, 0x80, 0x0A, 0x01, 'v'};
  CU_ASSERT_EQUAL(check(&ember__v1__get_instance_request__descriptor, twice, sizeof(twice), &e),
                  -1);
}

static void expect_broken(const uint8_t *b, size_t n, const char *what)
{
  cmn_error e;
  CU_ASSERT_EQUAL(check(&ember__v1__create_instance_request__descriptor, b, n, &e), -1);
  CU_ASSERT_EQUAL(e.code, CMN_INVALID_ARGUMENT);
  if (strstr(e.msg, what) == NULL)
    fprintf(stderr, "broken: '%s' lacks '%s'\n", e.msg, what);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, what));
}

static void test_broken(void)
{
  size_t n;
  uint8_t *b = create_req(&n, NULL, NULL);
  /* Every truncation of a valid request is either a valid prefix (cut
   * between records) or refused; none crashes or reads past the end. */
  for (size_t cut = 0; cut < n; cut++) {
    uint8_t *p = malloc(cut ? cut : 1);
    memcpy(p, b, cut);
    cmn_error e;
    int r = check(&ember__v1__create_instance_request__descriptor, p, cut, &e);
    CU_ASSERT(r == 0 || (r == -1 && e.code == CMN_INVALID_ARGUMENT));
    free(p);
  }
  /* The spec record cut inside: its length runs past the end. */
  uint8_t *p = malloc(n);
  memcpy(p, b, n);
  expect_broken(p, n - 3, "truncated length-delimited field");
  free(p);
  free(b);
  static const uint8_t varint[] = {0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
  expect_broken(varint, sizeof(varint), "truncated varint");
  static const uint8_t key[] = {0x80};
  expect_broken(key, sizeof(key), "truncated or overlong field key");
  static const uint8_t zero[] = {0x02, 0x00};
  expect_broken(zero, sizeof(zero), "field number out of range");
  static const uint8_t group[] = {0x0B, 0x0C};
  expect_broken(group, sizeof(group), "group or reserved wire type");
  static const uint8_t f64[] = {0x41, 0, 0};
  expect_broken(f64, sizeof(f64), "truncated 64-bit field");
  static const uint8_t f32[] = {0x4D, 0};
  expect_broken(f32, sizeof(f32), "truncated 32-bit field");
  /* Inside spec: the error names where. */
  static const uint8_t nested[] = {0x12, 0x02, 0x0A, 0x05};
  expect_broken(nested, sizeof(nested), "of spec");
}

/* Nesting deeper than SRV_WIRE_MAX_DEPTH is refused, not recursed into. */
static void test_depth(void)
{
  /* DescriptorProto.nested_type (field 3) nests DescriptorProto. */
  enum { LEVELS = SRV_WIRE_MAX_DEPTH + 4 };
  uint8_t buf[LEVELS * 2];
  size_t n;
  /* Built inside out: the innermost message is empty; each level wraps the
   * previous one as 0x1A <len>. Lengths stay below 128 (one-byte varints). */
  uint8_t tmp[LEVELS * 2];
  size_t tn = 0;
  for (int i = 0; i < LEVELS; i++) {
    tmp[0] = 0x1A;
    tmp[1] = (uint8_t)tn;
    memcpy(tmp + 2, buf, tn);
    tn += 2;
    memcpy(buf, tmp, tn);
  }
  n = tn;
  cmn_error e;
  CU_ASSERT_EQUAL(check(&google__protobuf__descriptor_proto__descriptor, buf, n, &e), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "nested too deeply"));
  /* Exactly SRV_WIRE_MAX_DEPTH levels: accepted. */
  size_t skip = 2 * (LEVELS - SRV_WIRE_MAX_DEPTH);
  CU_ASSERT_EQUAL(check(&google__protobuf__descriptor_proto__descriptor, buf + skip, n - skip, &e),
                  0);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("wire_check", NULL, NULL);
  CU_add_test(s, "utf8_table", test_utf8_table);
  CU_add_test(s, "fields_named", test_fields_named);
  CU_add_test(s, "deep_nesting", test_deep_nesting);
  CU_add_test(s, "skipped", test_skipped);
  CU_add_test(s, "broken", test_broken);
  CU_add_test(s, "depth", test_depth);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
