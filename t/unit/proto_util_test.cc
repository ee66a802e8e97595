// proto_util: numbers, tokenizer, keys and base64 accepted and refused as
// memcached's util.c / proto_text.c / base64.c do (64-bit Linux).
#include "src/proto_util.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace ftm {
namespace {

TEST(SafeStrtoull, AcceptsDecimal) {
  uint64_t v = 1;
  EXPECT_TRUE(safe_strtoull("0", &v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(safe_strtoull("18446744073709551615", &v));
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_TRUE(safe_strtoull("+5", &v));
  EXPECT_EQ(v, 5u);
  // Leading whitespace is skipped by strtoull, trailing whitespace ends it.
  EXPECT_TRUE(safe_strtoull(" 7", &v));
  EXPECT_EQ(v, 7u);
  EXPECT_TRUE(safe_strtoull("12\r", &v));
  EXPECT_EQ(v, 12u);
  EXPECT_TRUE(safe_strtoull("007", &v));
  EXPECT_EQ(v, 7u);
}

TEST(SafeStrtoull, RefusesGarbageOverflowAndNegative) {
  uint64_t v = 0;
  EXPECT_FALSE(safe_strtoull("", &v));
  EXPECT_FALSE(safe_strtoull("abc", &v));
  EXPECT_FALSE(safe_strtoull("12abc", &v));
  EXPECT_FALSE(safe_strtoull("18446744073709551616", &v));
  EXPECT_FALSE(safe_strtoull("-1", &v));
  // "-0" is not negative as a signed number: memcached accepts it.
  EXPECT_TRUE(safe_strtoull("-0", &v));
  EXPECT_EQ(v, 0u);
  // A small negative wraps to a huge value that is negative as signed.
  EXPECT_FALSE(safe_strtoull("-100", &v));
}

TEST(SafeStrtoull, DoesNotReadPastTheView) {
  std::string_view s("123456", 3);
  uint64_t v = 0;
  EXPECT_TRUE(safe_strtoull(s, &v));
  EXPECT_EQ(v, 123u);
}

TEST(SafeStrtoull, LongTokens) {
  std::string zeros(300, '0');
  uint64_t v = 9;
  EXPECT_TRUE(safe_strtoull(zeros + "42", &v));
  EXPECT_EQ(v, 42u);
  EXPECT_FALSE(safe_strtoull(zeros + "x", &v));
}

TEST(SafeStrtoul, TruncatesLikeMemcached) {
  uint32_t v = 0;
  EXPECT_TRUE(safe_strtoul("4294967295", &v));
  EXPECT_EQ(v, 4294967295u);
  // memcached 1.6.18 stores flags 4294967296 as 0 (verified: "VALUE k 0 1").
  EXPECT_TRUE(safe_strtoul("4294967296", &v));
  EXPECT_EQ(v, 0u);
  EXPECT_FALSE(safe_strtoul("-1", &v));
  EXPECT_FALSE(safe_strtoul("1x", &v));
  EXPECT_FALSE(safe_strtoul("", &v));
}

TEST(SafeStrtol, SignedAndTruncated) {
  int32_t v = 0;
  EXPECT_TRUE(safe_strtol("-1", &v));
  EXPECT_EQ(v, -1);
  EXPECT_TRUE(safe_strtol("2147483647", &v));
  EXPECT_EQ(v, 2147483647);
  // A 64-bit long stored into int32_t: "set k 0 0 4294967297" stores 1 byte.
  EXPECT_TRUE(safe_strtol("4294967297", &v));
  EXPECT_EQ(v, 1);
  EXPECT_FALSE(safe_strtol("99999999999999999999", &v));
  EXPECT_FALSE(safe_strtol("abc", &v));
  EXPECT_FALSE(safe_strtol("", &v));
}

TEST(SafeStrtoll, Range) {
  int64_t v = 0;
  EXPECT_TRUE(safe_strtoll("-9223372036854775808", &v));
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_FALSE(safe_strtoll("9223372036854775808", &v));
  EXPECT_TRUE(safe_strtoll("30", &v));
  EXPECT_EQ(v, 30);
}

TEST(Tokenize, SplitsOnSpacesOnly) {
  std::string_view t[24];
  size_t n = tokenize("  set  k\t 0 0 5 ", t, 24);
  ASSERT_EQ(n, 5u);
  EXPECT_EQ(t[0], "set");
  EXPECT_EQ(t[1], "k\t");
  EXPECT_EQ(t[2], "0");
  EXPECT_EQ(t[4], "5");
  EXPECT_EQ(tokenize("", t, 24), 0u);
  EXPECT_EQ(tokenize("    ", t, 24), 0u);
}

TEST(Tokenize, RemainderInLastSlot) {
  std::string_view t[4];
  size_t n = tokenize("get a b c d  e", t, 4);
  ASSERT_EQ(n, 4u);
  EXPECT_EQ(t[0], "get");
  EXPECT_EQ(t[2], "b");
  EXPECT_EQ(t[3], "c d  e");
  // Exactly `max` tokens: the last slot holds the last token.
  n = tokenize("a b c d", t, 4);
  ASSERT_EQ(n, 4u);
  EXPECT_EQ(t[3], "d");
  n = tokenize("a b c", t, 4);
  ASSERT_EQ(n, 3u);
}

TEST(ValidKey, LengthAndControlCharacters) {
  EXPECT_TRUE(valid_key("k"));
  EXPECT_TRUE(valid_key(std::string(250, 'a')));
  EXPECT_FALSE(valid_key(std::string(251, 'a')));
  EXPECT_FALSE(valid_key(""));
  EXPECT_FALSE(valid_key("a b"));
  EXPECT_FALSE(valid_key("a\tb"));
  EXPECT_FALSE(valid_key("a\x7f"));
  EXPECT_FALSE(valid_key(std::string("a\0b", 3)));
  EXPECT_TRUE(valid_key("\xc3\xa9t\xc3\xa9"));
}

TEST(Base64, RoundTrip) {
  std::string enc, dec;
  for (const std::string& s : std::initializer_list<std::string>{
           "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\x10", 3)}) {
    base64_encode(s, &enc);
    ASSERT_TRUE(base64_decode(enc, &dec)) << enc;
    EXPECT_EQ(dec, s);
  }
  base64_encode("foobar", &enc);
  EXPECT_EQ(enc, "Zm9vYmFy");
  base64_encode("fo", &enc);
  EXPECT_EQ(enc, "Zm8=");
  base64_encode("f", &enc);
  EXPECT_EQ(enc, "Zg==");
}

TEST(Base64, MalformedLikeMemcached) {
  std::string dec;
  EXPECT_FALSE(base64_decode("", &dec));
  EXPECT_FALSE(base64_decode("Zm9", &dec));     // not a whole block
  EXPECT_FALSE(base64_decode("====", &dec));    // padding only
  EXPECT_FALSE(base64_decode("Z===", &dec));    // three pads
  // Characters outside the alphabet are skipped, as memcached's base64.c.
  ASSERT_TRUE(base64_decode("Zm9v!YmFy", &dec));
  EXPECT_EQ(dec, "foobar");
  // Decoding stops after the first padded block.
  ASSERT_TRUE(base64_decode("Zg==Zm9v", &dec));
  EXPECT_EQ(dec, "f");
}

TEST(AppendU64, Decimal) {
  std::string s = "x";
  append_u64(s, 0);
  append_u64(s, 42);
  append_u64(s, UINT64_MAX);
  EXPECT_EQ(s, "x04218446744073709551615");
}

}  // namespace
}  // namespace ftm
