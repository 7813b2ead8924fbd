/* nkey.c: just enough of NATS NKeys to derive a user's public key from its
 * seed (libsodium does the Ed25519 part). Format: base32 (RFC 4648, no
 * padding) of prefix bytes + 32 key bytes + CRC-16/XMODEM, little endian. */
#include <string.h>

#include <sodium.h>

#include "internal.h"

#define PREFIX_SEED (18 << 3) /* 'S' */
#define PREFIX_USER (20 << 3) /* 'U' */

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t
crc16(const unsigned char *p, size_t n)
{
	uint16_t crc = 0;

	while (n-- > 0) {
		crc ^= (uint16_t)(*p++ << 8);
		for (int i = 0; i < 8; i++) {
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
			                     : (uint16_t)(crc << 1);
		}
	}
	return crc;
}

static void
b32_encode(const unsigned char *in, size_t n, char *out)
{
	unsigned buf = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		buf = (buf << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			*out++ = b32[(buf >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0) {
		*out++ = b32[(buf << (5 - bits)) & 31];
	}
	*out = '\0';
}

/* Decode into out (at most cap bytes); returns the length or -1. */
static int
b32_decode(const char *in, unsigned char *out, size_t cap)
{
	unsigned buf = 0;
	int bits = 0;
	size_t n = 0;

	for (; *in != '\0'; in++) {
		const char *p = strchr(b32, *in);
		if (p == NULL) {
			return -1;
		}
		buf = (buf << 5) | (unsigned)(p - b32);
		bits += 5;
		if (bits >= 8) {
			if (n == cap) {
				return -1;
			}
			out[n++] = (unsigned char)(buf >> (bits - 8));
			bits -= 8;
		}
	}
	return (int)n;
}

void
mesh__nkey_seed_encode(const unsigned char raw[32],
                       char seed[MESH__NKEY_SEED_LEN + 1])
{
	unsigned char b[36];
	uint16_t crc;

	b[0] = PREFIX_SEED | (PREFIX_USER >> 5);
	b[1] = (unsigned char)((PREFIX_USER & 31) << 3);
	memcpy(b + 2, raw, 32);
	crc = crc16(b, 34);
	b[34] = (unsigned char)(crc & 0xff);
	b[35] = (unsigned char)(crc >> 8);
	b32_encode(b, sizeof(b), seed);
	sodium_memzero(b, sizeof(b));
}

mesh_err
mesh__nkey_seed_decode(const char *seed, unsigned char raw[32])
{
	unsigned char b[40];
	uint16_t crc;
	mesh_err err = MESH_OK;

	if (strlen(seed) != MESH__NKEY_SEED_LEN ||
	    b32_decode(seed, b, sizeof(b)) != 36) {
		err = mesh_err_set(MESH_EINVAL, "nkey seed: not a seed");
		goto done;
	}
	crc = (uint16_t)(b[34] | (b[35] << 8));
	if (crc != crc16(b, 34)) {
		err = mesh_err_set(MESH_EINVAL, "nkey seed: bad checksum");
		goto done;
	}
	if ((b[0] & 0xf8) != PREFIX_SEED ||
	    (((b[0] & 7) << 5) | (b[1] >> 3)) != PREFIX_USER) {
		err = mesh_err_set(MESH_EINVAL,
		                   "nkey seed: not a user seed (SU...)");
		goto done;
	}
	memcpy(raw, b + 2, 32);
done:
	sodium_memzero(b, sizeof(b));
	return err;
}

void
mesh__nkey_public_encode(const unsigned char pk[32],
                         char pub[MESH__NKEY_PUBLIC_LEN + 1])
{
	unsigned char out[35];
	uint16_t crc;

	out[0] = PREFIX_USER;
	memcpy(out + 1, pk, 32);
	crc = crc16(out, 33);
	out[33] = (unsigned char)(crc & 0xff);
	out[34] = (unsigned char)(crc >> 8);
	b32_encode(out, sizeof(out), pub);
}

mesh_err
mesh__nkey_public_decode(const char *pub, unsigned char pk[32])
{
	unsigned char b[40];
	uint16_t crc;

	if (strlen(pub) != MESH__NKEY_PUBLIC_LEN ||
	    b32_decode(pub, b, sizeof(b)) != 35 || b[0] != PREFIX_USER) {
		return mesh_err_set(MESH_EINVAL,
		                    "public key '%.60s': not a user key "
		                    "(U...)",
		                    pub);
	}
	crc = (uint16_t)(b[33] | (b[34] << 8));
	if (crc != crc16(b, 33)) {
		return mesh_err_set(MESH_EINVAL,
		                    "public key '%.60s': bad checksum", pub);
	}
	memcpy(pk, b + 1, 32);
	return MESH_OK;
}

mesh_err
mesh__nkey_public_from_seed(const char *seed,
                            char pub[MESH__NKEY_PUBLIC_LEN + 1])
{
	unsigned char raw[32];
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	mesh_err err;

	if (sodium_init() < 0) {
		return mesh_err_set(MESH_EINTERNAL, "libsodium did not start");
	}
	if ((err = mesh__nkey_seed_decode(seed, raw)) == MESH_OK) {
		crypto_sign_seed_keypair(pk, sk, raw);
		mesh__nkey_public_encode(pk, pub);
	}
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(sk, sizeof(sk));
	return err;
}

/* S = r + H(R || A || m) * a (mod L), R = rB, for a random r: a valid
 * Ed25519 signature that differs from the deterministic one. */
static void
sign_hedged(const unsigned char sk[64], const unsigned char *m, size_t n,
            unsigned char sig[64])
{
	unsigned char az[64], wide[64] = {0}, hram[64];
	unsigned char a[32], r[32], k[32], s[32];
	crypto_hash_sha512_state st;

	crypto_hash_sha512(az, sk, 32);
	az[0] &= 248;
	az[31] &= 127;
	az[31] |= 64;
	memcpy(wide, az, 32);
	crypto_core_ed25519_scalar_reduce(a, wide);
	do {
		crypto_core_ed25519_scalar_random(r);
		if (crypto_scalarmult_ed25519_base_noclamp(sig, r) != 0) {
			continue;
		}
		crypto_hash_sha512_init(&st);
		crypto_hash_sha512_update(&st, sig, 32);
		crypto_hash_sha512_update(&st, sk + 32, 32);
		crypto_hash_sha512_update(&st, m, n);
		crypto_hash_sha512_final(&st, hram);
		crypto_core_ed25519_scalar_reduce(k, hram);
		crypto_core_ed25519_scalar_mul(s, k, a);
		crypto_core_ed25519_scalar_add(sig + 32, s, r);
	} while (sig[0] == 0);
	sodium_memzero(az, sizeof(az));
	sodium_memzero(wide, sizeof(wide));
	sodium_memzero(a, sizeof(a));
	sodium_memzero(r, sizeof(r));
	sodium_memzero(s, sizeof(s));
}

void
mesh__nkey_sign_nonce(const unsigned char sk[64], const unsigned char *m,
                      size_t n, unsigned char sig[64])
{
	crypto_sign_detached(sig, NULL, m, n, sk);
	if (sig[0] == 0) {
		sign_hedged(sk, m, n, sig);
	}
}
