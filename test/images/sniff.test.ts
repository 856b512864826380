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
    ['an MP4 ftyp', ftyp('isom', 'mp41'), null],
    ['empty', Buffer.alloc(0), null],
    ['plain text', Buffer.from('hello, this is not an image'), null],
    ['SVG', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), null],
    ['HTML', Buffer.from('<!doctype html><html><script>alert(1)</script></html>'), null],
    ['GIF', Buffer.from('GIF89a\x01\x00\x01\x00'), null],
    ['PDF', Buffer.from('%PDF-1.7\n'), null],
    ['two JPEG bytes only', Buffer.from([0xff, 0xd8]), null],
    ['RIFF that is not WebP (WAV)', Buffer.from('RIFF\x00\x00\x00\x00WAVEfmt '), null],
    ['the first 4 bytes of the PNG signature, then others', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00, 0x00, 0x00, 0x49, 0x48, 0x44, 0x52]), null],
    ['an AVIF ftyp box whose size is below 16', Buffer.concat([Buffer.from([0, 0, 0, 12]), ftyp('avif', 'mif1').subarray(4)]), null],
    ['a HEIC ftyp box whose size is below 16', Buffer.concat([Buffer.from([0, 0, 0, 8]), ftyp('heic', 'mif1').subarray(4)]), null],
  ];
  it.each(cases)('%s', (_name, head, expected) => {
    expect(sniffImageType(head)).toBe(expected);
  });

  it('has a mime for every type', () => {
    expect(IMAGE_MIME).toEqual({ jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', avif: 'image/avif', heic: 'image/heic' });
  });
});
