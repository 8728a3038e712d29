// Exact keys of SPEC.md ("Sources", "Outputs", "Tarball layout") for one plate, and the key and
// name refusals. Every expected string is written out here, never built by the code under test.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  fileFolderClashes,
  listingPath,
  outputKeys,
  plateLayout,
  tarPath,
  unsafeKeyReason,
  unsafeNameReason,
  type LayoutOptions,
  type Source,
} from '../../src/layout/layout.js';

const OPTS: LayoutOptions = {
  projectName: '2013_Gustafsdottir_PLOSONE',
  batchId: 'BBBC022',
  bucket: 'imaging-platform',
  coldBucket: 'imaging-platform-cold',
};
const PLATE = {
  plateId: 'BR00092655',
  plateIdFull: 'BR00092655__2017-12-10T12_48_16-Measurement 1',
};

const IMAGES: Source = {
  name: 'images',
  prefix:
    'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/',
};
const ILLUM: Source = {
  name: 'illum',
  prefix: 'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655/',
};
const ANALYSIS: Source = {
  name: 'analysis',
  prefix: 'projects/2013_Gustafsdottir_PLOSONE/workspace/analysis/BBBC022/BR00092655/',
};
const BACKEND: Source = {
  name: 'backend',
  prefix: 'projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/',
};

describe('plateLayout', () => {
  test('--no-compress: plain .tar tarballs; their sums keep the X.md5 / X.etag names', () => {
    const t = plateLayout({ ...OPTS, compressed: false }, PLATE).tarballs.map((x) => [
      x.fileName,
      x.key,
      x.md5Key,
      x.etagKey,
    ]);
    const dir = 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/';
    const T = '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655';
    assert.deepEqual(t, [
      [
        `${T}_images_illum_analysis.tar`,
        `${dir}${T}_images_illum_analysis.tar`,
        `${dir}${T}_images_illum_analysis.md5`,
        `${dir}${T}_images_illum_analysis.etag`,
      ],
      [
        `${T}_backend.tar`,
        `${dir}${T}_backend.tar`,
        `${dir}${T}_backend.md5`,
        `${dir}${T}_backend.etag`,
      ],
    ]);
  });

  test('every key of a plate whose plate_id_full differs and contains a space', () => {
    const layout = plateLayout(OPTS, PLATE);
    assert.deepEqual(layout, {
      plate: {
        plateId: 'BR00092655',
        plateIdFull: 'BR00092655__2017-12-10T12_48_16-Measurement 1',
      },
      compressed: true,
      tag: '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655',
      bucket: 'imaging-platform',
      coldBucket: 'imaging-platform-cold',
      sources: [IMAGES, ILLUM, ANALYSIS, BACKEND],
      tarballs: [
        {
          name: 'images_illum_analysis',
          fileName: '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.tar.gz',
          key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.tar.gz',
          md5Key:
            'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.md5',
          etagKey:
            'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.etag',
          indexKey:
            'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.index',
          sources: [IMAGES, ILLUM, ANALYSIS],
        },
        {
          name: 'backend',
          fileName: '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.tar.gz',
          key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.tar.gz',
          md5Key:
            'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.md5',
          etagKey:
            'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.etag',
          indexKey:
            'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.index',
          sources: [BACKEND],
        },
      ],
      untrimmedListingKey:
        'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_listing_untrimmed_s3.txt',
      s3ListingKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_listing_s3.txt',
      tarListingKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_listing_tar.txt',
      deleteScriptKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_delete_s3.sh',
      etagListingKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_etags_s3.txt',
      inProgressKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_archive_in_progress.json',
      verifiedKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_verified.json',
      leaseKey:
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655.lease',
    });
  });

  test('the tag uses plate_id, never plate_id_full', () => {
    const layout = plateLayout(OPTS, { plateId: '20585', plateIdFull: '20585__full name' });
    assert.equal(layout.tag, '2013_Gustafsdottir_PLOSONE_BBBC022_20585');
    assert.equal(
      layout.sources[0]?.prefix,
      'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/20585__full name/',
    );
    assert.equal(
      layout.sources[1]?.prefix,
      'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/20585/',
    );
  });

  test('all four prefixes end with "/" so plate 2058 never names 20586', () => {
    const layout = plateLayout(OPTS, { plateId: '2058', plateIdFull: '2058' });
    assert.deepEqual(
      layout.sources.map((s) => [s.name, s.prefix]),
      [
        ['images', 'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/2058/'],
        ['illum', 'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/2058/'],
        ['analysis', 'projects/2013_Gustafsdottir_PLOSONE/workspace/analysis/BBBC022/2058/'],
        ['backend', 'projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/2058/'],
      ],
    );
    for (const s of layout.sources) {
      const sibling = `${s.prefix.slice(0, -'2058/'.length)}20586/x.npy`;
      assert.equal(sibling.startsWith(s.prefix), false, sibling);
      assert.equal(unsafeKeyReason(s, sibling), `is not under ${s.prefix}`);
    }
  });

  test('tarball groups: sources 1-3 in the first, source 4 in the second, same objects', () => {
    const layout = plateLayout(OPTS, PLATE);
    const [first, second] = layout.tarballs;
    assert.deepEqual(
      first?.sources.map((s) => s.name),
      ['images', 'illum', 'analysis'],
    );
    assert.deepEqual(
      second?.sources.map((s) => s.name),
      ['backend'],
    );
    assert.equal(layout.tarballs.length, 2);
  });
});

describe('outputKeys', () => {
  test('every key archive writes, in write order, the delete script last', () => {
    assert.deepEqual(outputKeys(plateLayout(OPTS, PLATE)), [
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.tar.gz',
      },
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.md5',
      },
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.etag',
      },
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.tar.gz',
      },
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.md5',
      },
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_backend.etag',
      },
      {
        bucket: 'imaging-platform-cold',
        key: 'imaging_analysis/2013_Gustafsdottir_PLOSONE/plates/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_listing_untrimmed_s3.txt',
      },
      {
        bucket: 'imaging-platform',
        key: 'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_listing_s3.txt',
      },
      {
        bucket: 'imaging-platform',
        key: 'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_file_listing_tar.txt',
      },
      {
        bucket: 'imaging-platform',
        key: 'projects/2013_Gustafsdottir_PLOSONE/workspace/backup/2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_delete_s3.sh',
      },
    ]);
  });

  test('the buckets come from the options', () => {
    const keys = outputKeys(
      plateLayout(
        { ...OPTS, bucket: 'live-b', coldBucket: 'cold-b' },
        { plateId: 'p', plateIdFull: 'p' },
      ),
    );
    assert.deepEqual(
      keys.map((k) => k.bucket),
      [
        'cold-b',
        'cold-b',
        'cold-b',
        'cold-b',
        'cold-b',
        'cold-b',
        'cold-b',
        'live-b',
        'live-b',
        'live-b',
      ],
    );
  });
});

describe('listingPath and tarPath', () => {
  test('only the leading projects/ is removed', () => {
    assert.equal(
      listingPath(
        'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/r01c01f01p01-ch1sk1fk1fl1.tiff',
      ),
      '2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/r01c01f01p01-ch1sk1fk1fl1.tiff',
    );
    // the old script removed "projects/" anywhere in the line
    assert.equal(
      listingPath('projects/P/workspace/analysis/B/p/projects/x.csv'),
      'P/workspace/analysis/B/p/projects/x.csv',
    );
    assert.equal(listingPath('projects/'), '');
  });

  test('a key outside projects/ is refused', () => {
    for (const key of [
      'project/P/x',
      'Projects/P/x',
      'xprojects/P/x',
      'a/projects/P/x',
      '',
      'projects',
    ]) {
      assert.throws(() => listingPath(key), { message: `key outside projects/: ${key}` });
      assert.throws(() => tarPath('T', key), { message: `key outside projects/: ${key}` });
    }
  });

  test('tar member name: leading projects/ replaced by the tag and "/"', () => {
    const tag = '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655';
    assert.equal(
      tarPath(
        tag,
        'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/Images/r01c01f01p01-ch1sk1fk1fl1.tiff',
      ),
      '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/Images/r01c01f01p01-ch1sk1fk1fl1.tiff',
    );
    assert.equal(
      tarPath(tag, 'projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/'),
      '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/',
    );
    assert.equal(
      tarPath(
        tag,
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/BR00092655.sqlite',
      ),
      '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/BR00092655.sqlite',
    );
  });
});

describe('unsafeKeyReason', () => {
  const P = IMAGES.prefix;

  test('legitimate keys are accepted', () => {
    const ok = [
      'a.tif',
      'Images/r01c01f01p01-ch1sk1fk1fl1.tiff',
      'with space/and  two  spaces.tif',
      'unicode/Ünïcødé µm 顕微鏡 🔬.tif',
      'chars/a+b&c=d@e,f;g(h)[i]{j}~!#$%^\'"`.csv',
      '...',
      '..hidden',
      'name..',
      'a.b/.c/c.',
      'back\\slash',
      'sub/', // a folder marker below the source
      'deep/er/folder/',
      '', // the folder marker of the source itself
    ];
    for (const rest of ok) assert.equal(unsafeKeyReason(IMAGES, P + rest), undefined, rest);
  });

  test('"." and ".." segments are refused', () => {
    const cases: [string, string][] = [
      ['..', 'has a ".." path segment'],
      ['../x', 'has a ".." path segment'],
      ['../', 'has a ".." path segment'],
      ['a/../../x', 'has a ".." path segment'],
      ['a/..', 'has a ".." path segment'],
      ['a/../', 'has a ".." path segment'],
      ['.', 'has a "." path segment'],
      ['./x', 'has a "." path segment'],
      ['./', 'has a "." path segment'],
      ['a/./b', 'has a "." path segment'],
      ['a/.', 'has a "." path segment'],
    ];
    for (const [rest, why] of cases) assert.equal(unsafeKeyReason(IMAGES, P + rest), why, rest);
  });

  test('empty segments are refused', () => {
    for (const rest of ['/', '/a', 'a//b', 'a//', '//', 'a/b//c/']) {
      assert.equal(unsafeKeyReason(IMAGES, P + rest), 'has an empty path segment (//)', rest);
    }
  });

  test('control characters are refused', () => {
    for (const c of ['\u0000', '\u0001', '\t', '\n', '\r', '\u001b', '\u001f', '\u007f']) {
      assert.equal(
        unsafeKeyReason(IMAGES, `${P}a${c}b.tif`),
        'contains a control character',
        JSON.stringify(c),
      );
    }
    // also in a folder marker
    assert.equal(unsafeKeyReason(IMAGES, `${P}dir\n/`), 'contains a control character');
  });

  test('keys not under the prefix are refused', () => {
    const not = [
      // the folder itself without its trailing "/"
      'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1',
      // a sibling whose name starts with the plate's
      'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 12/x.tif',
      'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655/x.npy',
      'x.tif',
      '',
    ];
    for (const key of not) {
      assert.equal(
        unsafeKeyReason(IMAGES, key),
        'is not under projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/',
        key,
      );
    }
    const illum2058: Source = {
      name: 'illum',
      prefix: 'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/2058/',
    };
    assert.equal(
      unsafeKeyReason(illum2058, 'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/20586/a.npy'),
      'is not under projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/2058/',
    );
    assert.equal(
      unsafeKeyReason(illum2058, 'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/2058/a.npy'),
      undefined,
    );
  });

  test('every source is checked against its own prefix', () => {
    for (const s of [IMAGES, ILLUM, ANALYSIS, BACKEND]) {
      assert.equal(unsafeKeyReason(s, `${s.prefix}f.csv`), undefined, s.name);
      assert.equal(unsafeKeyReason(s, `${s.prefix}../f.csv`), 'has a ".." path segment', s.name);
    }
    assert.equal(
      unsafeKeyReason(BACKEND, `${ANALYSIS.prefix}f.csv`),
      'is not under projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/',
    );
  });
});

describe('unsafeNameReason', () => {
  test('good names', () => {
    for (const name of [
      'BR00092655',
      'BR00092655__2017-12-10T12_48_16-Measurement 1',
      '20585',
      '2013_Gustafsdottir_PLOSONE',
      'a.b',
      '.hidden',
      'Plätte_ü 顕微鏡',
      'a+b&c=d',
      `quote"single'dollar$(touch PWNED)\`tick\``,
    ]) {
      assert.equal(unsafeNameReason(name), undefined, name);
    }
  });

  test('refused names', () => {
    const cases: [string, string][] = [
      ['', 'is empty'],
      [' ', 'has leading or trailing whitespace'],
      [' 20585', 'has leading or trailing whitespace'],
      ['20585 ', 'has leading or trailing whitespace'],
      ['\t20585', 'has leading or trailing whitespace'],
      ['20585\n', 'has leading or trailing whitespace'],
      ['20585\r', 'has leading or trailing whitespace'],
      ['\u00a020585', 'has leading or trailing whitespace'],
      ['a/b', 'contains "/"'],
      ['/', 'contains "/"'],
      ['20585/', 'contains "/"'],
      ['/20585', 'contains "/"'],
      ['..', 'contains ".."'],
      ['a..b', 'contains ".."'],
      ['..a', 'contains ".."'],
      ['.', 'is "."'],
      ['a\tb', 'contains a control character'],
      ['a\nb', 'contains a control character'],
      ['a\u0000b', 'contains a control character'],
      ['a\u001fb', 'contains a control character'],
      ['a\u007fb', 'contains a control character'],
    ];
    for (const [name, why] of cases)
      assert.equal(unsafeNameReason(name), why, JSON.stringify(name));
  });
});

describe('fileFolderClashes', () => {
  test('a file and a key below it, or its folder marker, clash; siblings and prefixes do not', () => {
    assert.deepEqual(
      fileFolderClashes([
        'p/a',
        'p/a/b',
        'p/a/c/d.tif',
        'p/ab',
        'p/ab.tif',
        'p/x/',
        'p/x',
        'p/y/',
        'p/y/z',
        'p/plain.tif',
      ]),
      [
        ['p/a', 'p/a/b'],
        ['p/a', 'p/a/c/d.tif'],
        ['p/x', 'p/x/'],
      ],
    );
  });
  test('none in an ordinary plate', () => {
    assert.deepEqual(fileFolderClashes(['p/a/', 'p/a/b', 'p/a/c', 'p/b']), []);
  });
});
