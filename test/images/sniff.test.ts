import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IMAGE_MIME, sniffImageType } from '../../src/images/sniff.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));

function ftyp(major: string, ...compatible: string[]): Buffer {
  const size = 16 + 4 * compatible.length;
  const box = Buffer.alloc(size + 8);
  box.writeUInt32BE(size, 0);
  box.write('ftyp', 4, 'latin1');
  box.write(major, 8, 'latin1');
  compatible.forEach((b, i) => box.write(b, 16 + 4 * i, 'latin1'));
  return box;
}

describe('sniffImageType', () => {
  const cases: Array<[string, Buffer, string | null]> = [
    ['a real JPEG', fixture('rocket_small_640x427.jpg'), 'jpeg'],
    ['a real PNG', fixture('chelsea_cat_small_451x300.png'), 'png'],
    ['a WebP header', Buffer.concat([Buffer.from('RIFF'), Buffer.from([0, 1, 0, 0]), Buffer.from('WEBPVP8 ')]), 'webp'],
    ['an AVIF ftyp', ftyp('avif', 'mif1', 'miaf'), 'avif'],
    ['an AVIF brand listed as compatible only', ftyp('mif1', 'avif'), 'avif'],
    ['a HEIC ftyp', ftyp('heic', 'mif1'), 'heic'],
    // An animated AVIF (image sequence) may name only the sequence brand: it is AVIF, not the generic HEIF it also lists.
    ['an AVIF sequence ftyp (avis) without the avif brand', ftyp('avis', 'msf1', 'miaf'), 'avif'],
    // The generic HEIF brands alone (no codec brand) are HEIF: HEIC's type, as the sniffer documents.
    ['a HEIF image ftyp with only the generic brand mif1', ftyp('mif1', 'miaf'), 'heic'],
    ['a HEIF sequence ftyp with only the generic brand msf1', ftyp('msf1', 'iso8'), 'heic'],
    ['an MP4 ftyp', ftyp('isom', 'mp41'), null],
    ['empty', Buffer.alloc(0), null],
    ['plain text', Buffer.from('hello, this is not an image'), null],
    ['SVG', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), null],
    ['HTML', Buffer.from('<!doctype html><html><script>alert(1)</script></html>'), null],
    ['GIF', Buffer.from('GIF89a\x01\x00\x01\x00'), null],
    ['PDF', Buffer.from('%PDF-1.7\n'), null],
    ['two JPEG bytes only', Buffer.from([0xff, 0xd8]), null],
    // A JPEG starts with SOI (FF D8) and a marker (FF): the third byte is part of the signature.
    ['FF D8 followed by a byte that starts no marker', Buffer.from([0xff, 0xd8, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46]), null],
    ['RIFF that is not WebP (WAV)', Buffer.from('RIFF\x00\x00\x00\x00WAVEfmt '), null],
    ['the first 4 bytes of the PNG signature, then others', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00, 0x00, 0x00, 0x49, 0x48, 0x44, 0x52]), null],
    ['an AVIF ftyp box whose size is below 16', Buffer.concat([Buffer.from([0, 0, 0, 12]), ftyp('avif', 'mif1').subarray(4)]), null],
    ['a HEIC ftyp box whose size is below 16', Buffer.concat([Buffer.from([0, 0, 0, 8]), ftyp('heic', 'mif1').subarray(4)]), null],
    // Brands are read from the ftyp box only: an MP4 whose next box happens to hold 'avif' or 'heic' is still no image.
    ['an MP4 ftyp followed by a box holding image brand names', Buffer.concat([ftyp('isom', 'mp41').subarray(0, 20), Buffer.from('\x00\x00\x00\x10freeavifheic')]), null],
  ];
  it.each(cases)('%s', (_name, head, expected) => {
    expect(sniffImageType(head)).toBe(expected);
  });

  it('has a mime for every type', () => {
    expect(IMAGE_MIME).toEqual({ jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', avif: 'image/avif', heic: 'image/heic' });
  });
});
